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
	f, err := procStatus(pid)
	return f["VmRSS"] << 10, int(f["Threads"]), err
}

// RSS is a process's resident set split the way /proc/PID/status splits it:
// anonymous pages (Go's heap, stacks and runtime structures) and file pages
// (the binary's text and data, and mmapped files such as bbolt's DB).
type RSS struct {
	Total, Anon, File int64
}

// ProcRSS reads VmRSS, RssAnon and RssFile (bytes) of a process.
func ProcRSS(pid int) (RSS, error) {
	f, err := procStatus(pid)
	if err == nil && f["VmRSS"] == 0 {
		err = fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	if err != nil {
		return RSS{}, err
	}
	return RSS{Total: f["VmRSS"] << 10, Anon: f["RssAnon"] << 10, File: f["RssFile"] << 10}, nil
}

// procStatus is /proc/PID/status's numeric fields by name (the first
// number of each line: kB for the sizes).
func procStatus(pid int) (map[string]int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fields := map[string]int64{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		fs := strings.Fields(v)
		if !ok || len(fs) == 0 {
			continue
		}
		if n, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
			fields[k] = n
		}
	}
	return fields, sc.Err()
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
