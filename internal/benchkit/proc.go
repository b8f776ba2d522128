package benchkit

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ProcStatus reads VmRSS (bytes) and the thread count of a process.
func ProcStatus(pid int) (rss int64, threads int, err error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fs := strings.Fields(v)
		if len(fs) == 0 {
			continue
		}
		switch k {
		case "VmRSS":
			kb, _ := strconv.ParseInt(fs[0], 10, 64)
			rss = kb << 10
		case "Threads":
			threads, _ = strconv.Atoi(fs[0])
		}
	}
	return rss, threads, sc.Err()
}

// RSS is a process's resident set split the way /proc/PID/status splits it:
// anonymous pages (Go's heap, stacks and runtime structures) and file pages
// (the binary's text and data, and mmapped files such as bbolt's DB).
type RSS struct {
	Total, Anon, File int64
}

// ProcRSS reads VmRSS, RssAnon and RssFile (bytes) of a process.
func ProcRSS(pid int) (RSS, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return RSS{}, err
	}
	var r RSS
	for _, line := range strings.Split(string(data), "\n") {
		k, v, ok := strings.Cut(line, ":")
		fs := strings.Fields(v)
		if !ok || len(fs) == 0 {
			continue
		}
		kb, _ := strconv.ParseInt(fs[0], 10, 64)
		switch k {
		case "VmRSS":
			r.Total = kb << 10
		case "RssAnon":
			r.Anon = kb << 10
		case "RssFile":
			r.File = kb << 10
		}
	}
	if r.Total == 0 {
		return RSS{}, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return r, nil
}

// OpenFDs counts the entries of /proc/PID/fd.
func OpenFDs(pid int) (int, error) {
	es, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	return len(es), err
}

// DebugStats is what internal/ifmgrd-debug answers on its debug socket.
type DebugStats struct {
	Goroutines int    `json:"goroutines"`
	HeapAlloc  uint64 `json:"heap_alloc"`
	HeapSys    uint64 `json:"heap_sys"`
	NumGC      uint32 `json:"num_gc"`
}

// ReadDebug asks an ifmgrd-debug process for its runtime figures.
func ReadDebug(socket string) (DebugStats, error) {
	var st DebugStats
	c, err := net.DialTimeout("unix", socket, 5*time.Second)
	if err != nil {
		return st, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	err = json.NewDecoder(c).Decode(&st)
	return st, err
}

// Percentile of ds (nearest rank); ds is sorted in place.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(p/100*float64(len(ds))+0.5) - 1
	return ds[min(max(i, 0), len(ds)-1)]
}
