// Command ifmgrd-debug is ifmgrd (the same daemon.Main) with two things the
// bench and the soak need and the router image does not: a CPU profile of the
// whole run (-cpuprofile) and a socket answering the runtime's goroutine and
// heap figures (-debug-socket), read by internal/benchkit.ReadDebug, and a heap profile
// some time into the run (-memprofile). Its
// flags come first, then "--", then ifmgrd's.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/metrics"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/uroute/uroute/firmware/daemon"
	"github.com/uroute/uroute/internal/benchkit"
)

func main() {
	fs := flag.NewFlagSet("ifmgrd-debug", flag.ExitOnError)
	cpu := fs.String("cpuprofile", "", "write a CPU profile of the run here")
	dbg := fs.String("debug-socket", "", "answer runtime figures (JSON) on this Unix socket")
	mem := fs.String("memprofile", "", "write a heap profile here, -memprofile-after into the run")
	memAfter := fs.Duration("memprofile-after", time.Minute, "when to write the heap profile (0: only on SIGUSR1)")
	peak := fs.String("peak-profile", "", "write a heap profile here whenever the live heap reaches a new high (the profile of the run's peak)")
	fs.Parse(os.Args[1:])
	if *mem != "" {
		// Sample every 4 KiB allocated, not every 512 KiB: a daemon's heap
		// of a few megabytes would be a dozen samples.
		runtime.MemProfileRate = 4096
		if *memAfter > 0 {
			time.AfterFunc(*memAfter, func() { writeHeap(*mem) })
		}
		// SIGUSR1 writes it too, when the caller knows the moment (the
		// bench's footprint, right after it reads the RSS).
		usr1 := make(chan os.Signal, 1)
		signal.Notify(usr1, syscall.SIGUSR1)
		go func() {
			for range usr1 {
				writeHeap(*mem)
			}
		}()
	}
	if *peak != "" {
		runtime.MemProfileRate = 4096
		go watchPeak(*peak)
	}
	if *cpu != "" {
		f, err := os.Create(*cpu)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ifmgrd-debug:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "ifmgrd-debug:", err)
			os.Exit(1)
		}
	}
	if *dbg != "" {
		os.Remove(*dbg)
		ln, err := net.Listen("unix", *dbg)
		if err != nil {
			fmt.Fprintln(os.Stderr, "ifmgrd-debug:", err)
			os.Exit(1)
		}
		go serve(ln)
	}
	code := daemon.Main(fs.Args(), os.Stdout, os.Stderr)
	if *cpu != "" {
		pprof.StopCPUProfile()
	}
	os.Exit(code)
}

// writeHeap writes a heap profile to path (through a temporary file, so a
// reader never sees half of one).
func writeHeap(path string) {
	if err := writeMemStats(path + ".memstats"); err != nil { // as the moment was, before the GC
		fmt.Fprintln(os.Stderr, "ifmgrd-debug:", err)
	}
	runtime.GC() // the profile's in-use figures are of the last GC
	if err := writeHeapProfile(path); err != nil {
		fmt.Fprintln(os.Stderr, "ifmgrd-debug:", err)
	}
}

// writeHeapProfile writes the heap profile to path whole or not at all
// (a temporary file renamed): the bench reads it while ifmgrd runs.
func writeHeapProfile(path string) error {
	f, err := os.Create(path + ".tmp")
	if err != nil {
		return err
	}
	err = pprof.WriteHeapProfile(f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(path+".tmp", path)
	}
	return err
}

// watchPeak writes a heap profile to path each time the heap live at the
// last collection is a quarter above the last one written: what was live
// at the run's peak, which sizes the runtime's metadata and the spans a
// burst leaves half-empty. The profile's in-use figures are those of the
// last collection, so it is taken without collecting.
func watchPeak(path string) {
	live := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	var written uint64
	for range time.Tick(100 * time.Millisecond) { // rarely: the bench waits for ifmgrd's CPU time to stand still
		metrics.Read(live)
		if v := live[0].Value.Uint64(); v > written+written/4 {
			written = v
			if err := writeHeapProfile(path); err != nil {
				fmt.Fprintln(os.Stderr, "ifmgrd-debug:", err)
				return
			}
		}
	}
}

// writeMemStats writes the runtime's memory figures (where the RSS goes
// that the heap profile does not show: freed spans not yet returned,
// stacks, the runtime's own) as JSON.
func writeMemStats(path string) error {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b, err := json.MarshalIndent(map[string]uint64{
		"HeapAlloc": ms.HeapAlloc, "HeapInuse": ms.HeapInuse, "HeapIdle": ms.HeapIdle, "HeapReleased": ms.HeapReleased,
		"HeapSys": ms.HeapSys, "StackSys": ms.StackSys, "MSpanSys": ms.MSpanSys, "MCacheSys": ms.MCacheSys,
		"BuckHashSys": ms.BuckHashSys, "GCSys": ms.GCSys, "OtherSys": ms.OtherSys, "Sys": ms.Sys,
		"NextGC": ms.NextGC, "NumGC": uint64(ms.NumGC), "TotalAlloc": ms.TotalAlloc,
	}, "", " ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// serve answers each connection with one JSON object, one at a time: the
// goroutine count stays the same whether or not anyone asks.
func serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		json.NewEncoder(c).Encode(benchkit.DebugStats{
			Goroutines: runtime.NumGoroutine(),
			HeapAlloc:  ms.HeapAlloc, HeapSys: ms.HeapSys, NumGC: ms.NumGC,
		})
		c.Close()
	}
}
