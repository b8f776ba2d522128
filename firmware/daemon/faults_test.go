package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// lineCounter counts the lines written to it: the daemon's log volume,
// but for the periodic resync's line (every 5 minutes, by design).
type lineCounter struct{ n atomic.Int64 }

func (c *lineCounter) Write(p []byte) (int, error) {
	for _, line := range strings.SplitAfter(string(p), "\n") {
		if strings.HasSuffix(line, "\n") && !strings.Contains(line, "reason=periodic") {
			c.n.Add(1)
		}
	}
	return len(p), nil
}

// cpuTime is the CPU this process has used (user + system), from
// /proc/self/stat. The daemon runs in the test process; the test goroutine
// sleeps while it is measured, so the figure is the daemon's.
func cpuTime(t *testing.T) time.Duration {
	t.Helper()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14 of proc(5)
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		t.Fatalf("parse /proc/self/stat: %q", b)
	}
	const clkTck = 100 // USER_HZ, fixed by the kernel ABI
	return time.Duration(utime+stime) * time.Second / clkTck
}

// membersOf counts the ports of each bridge.
func membersOf(t *testing.T) map[string]int {
	t.Helper()
	n := map[string]int{}
	for _, m := range masters(t) {
		if m != "" {
			n[m]++
		}
	}
	return n
}

// A Linux bridge takes at most 1023 ports (BR_MAX_PORTS - 1); the kernel
// answers EXFULL for the rest. A profile that matches 1030 ports into one
// bridge must not retry the 7 refused joins in a hot loop: after settling
// the daemon is quiet (CPU near zero, no log growth), status shows each
// refusal and why, and a refused port joins as soon as another leaves.
func TestRefusedJoinsDoNotSpin(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(`
board = "exfull"
[[port]]
name = "lan"
match.name = "xf*"
bridge = "lan"
[[bridge]]
name = "lan"
keep_empty = true
`)
	var logLines lineCounter
	e.logOut = &logLines
	// A backoff far longer than the test: a refused join that is tried
	// again can only have been tried because an event changed its grounds.
	e.retry = time.Hour
	e.start()

	const ports, maxPorts = 1030, 1023
	var batch strings.Builder
	for i := 0; i < ports; i++ {
		fmt.Fprintf(&batch, "link add xf%d group %d type veth peer name xp%d group %d\nlink set xp%d up\n", i, e.foreignGroup(), i, e.foreignGroup(), i)
	}
	f := filepath.Join(e.dir, "exfull.batch")
	if err := os.WriteFile(f, []byte(batch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := ip(t, "-batch", f); err != nil {
		t.Fatal(err)
	}
	var bridge string
	waitFor(t, func() bool {
		for b, n := range membersOf(t) {
			if n == maxPorts {
				bridge = b
				return true
			}
		}
		return false
	})
	// The burst of 2060 links and their events takes the daemon a while
	// (longer on a loaded machine); then it must fall quiet. Measure quiet
	// windows until one is (a spinning daemon never is), and report each.
	// Quiet is both: the burst's last events (a peer's carrier coming up
	// late on a loaded host) change a refused join's grounds, and its one
	// retry is logged once, which is right; CPU alone was seen quiet in
	// such a window (a run at load 25 on 2 cores: 30 ms, 2 lines).
	const window, quietCPU = 3 * time.Second, 300 * time.Millisecond
	var cpu time.Duration
	var lines int64
	for attempt := 1; ; attempt++ {
		cpu0, lines0 := cpuTime(t), logLines.n.Load()
		time.Sleep(window)
		cpu, lines = cpuTime(t)-cpu0, logLines.n.Load()-lines0
		st := e.status()
		t.Logf("window %d with %d of %d ports in %s: the daemon used %v CPU (%.0f%% of a core) and logged %d lines (%.0f/s); event queue %d, resyncs %v",
			attempt, maxPorts, ports, bridge, cpu, 100*cpu.Seconds()/window.Seconds(), lines, float64(lines)/window.Seconds(), st.EventDepth, st.Resyncs)
		if (cpu <= quietCPU && lines == 0) || attempt == 20 {
			break
		}
	}
	if cpu > quietCPU {
		t.Errorf("daemon used %v CPU in a %v window after 20 windows: refused joins are retried in a loop", cpu, window)
	}
	if lines != 0 {
		t.Errorf("daemon logged %d lines in a quiet %v: a refusal is logged per attempt, not per change", lines, window)
	}

	// Unrelated events (a link outside the profile's globs flapping) must
	// not retry the refused joins: nothing they depend on changed. Before,
	// every event batch retried all 7 and logged an ERROR line for each.
	if err := ip(t, "link", "add", "other0", "group", fmt.Sprint(e.foreignGroup()), "type", "veth", "peer", "name", "otherp", "group", fmt.Sprint(e.foreignGroup())); err != nil {
		t.Fatal(err)
	}
	const flaps = 20
	cpu0, lines0 := cpuTime(t), logLines.n.Load()
	for i := 0; i < flaps; i++ {
		for _, state := range []string{"up", "down"} {
			if err := ip(t, "link", "set", "other0", state); err != nil {
				t.Fatal(err)
			}
			time.Sleep(20 * time.Millisecond) // separate event batches, as on a real router
		}
	}
	time.Sleep(time.Second)
	e.status() // a request drains the events already delivered first
	cpu, lines = cpuTime(t)-cpu0, logLines.n.Load()-lines0
	t.Logf("%d flaps of an unrelated link: the daemon used %v CPU and logged %d lines", flaps, cpu, lines)
	if lines != 0 {
		t.Errorf("%d flaps of an unrelated link logged %d lines: refused joins retried and logged per event", flaps, lines)
	}

	refused := map[string]bool{} // port names
	for _, r := range e.status().Refused {
		if !strings.Contains(r.Error, "exchange full") {
			t.Errorf("refused %s: %s, want exchange full (EXFULL)", r.Action, r.Error)
		}
		name, _, _ := strings.Cut(strings.TrimPrefix(r.Action, "set-master "), " ")
		refused[name] = true
	}
	if len(refused) != ports-maxPorts {
		t.Fatalf("status shows %d refused joins (%v), want %d", len(refused), refused, ports-maxPorts)
	}
	// Counted in the refused list only: the last convergence that acted
	// (also in status) shows the same refusals as its failures.
	if out, _, code := ifctl(t, e.socket, "status"); code != 0 || countLines(out, "refused: set-master ", "exchange full") != ports-maxPorts {
		t.Errorf("ifctl status (exit %d) does not show the %d refused joins:\n%s", code, ports-maxPorts, out)
	}

	// A port leaves: one refused port joins, long before its backoff ends.
	all := masters(t)
	var leaving string
	for i := 0; i < ports && leaving == ""; i++ {
		if name := fmt.Sprintf("xf%d", i); all[name] == bridge {
			leaving = name
		}
	}
	if err := ip(t, "link", "delete", leaving); err != nil {
		t.Fatal(err)
	}
	var joined string
	waitFor(t, func() bool {
		all := masters(t)
		for name := range refused {
			if all[name] == bridge {
				joined = name
				return true
			}
		}
		return false
	})
	if n := membersOf(t)[bridge]; n != maxPorts {
		t.Errorf("%s has %d ports after %s left and %s joined, want %d", bridge, n, leaving, joined, maxPorts)
	}
	if n := len(e.status().Refused); n != ports-maxPorts-1 {
		t.Errorf("status shows %d refused joins after one joined, want %d", n, ports-maxPorts-1)
	}
	t.Logf("%s left %s; %s, refused until then, joined it", leaving, bridge, joined)
}

// countLines counts the lines of out that, trimmed, start with prefix and
// contain sub.
func countLines(out, prefix, sub string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if strings.HasPrefix(line, prefix) && strings.Contains(line, sub) {
			n++
		}
	}
	return n
}
