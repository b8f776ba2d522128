package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/internal/benchkit"
)

// EventRate is what ifmgrd spends on one kind of event at EventPorts ports:
// its CPU time (utime+stime from /proc) from the first operation until it
// is idle again, per kernel operation, and the rates that follow.
type EventRate struct {
	Profile string `json:"profile"`
	Ports   int    `json:"ports"`
	Case    string `json:"case"`
	// Ops: the link changes made (each one an RTM_NEWLINK or DELLINK that
	// ifmgrd reads); a flap is two.
	Ops        int     `json:"ops"`
	CPUSeconds float64 `json:"cpu_s"`
	CPUPerOpMs float64 `json:"cpu_per_op_ms"`
	// WallSeconds: from the first operation to ifmgrd idle (its CPU time
	// unchanged for idleFor) with the goal met.
	WallSeconds float64 `json:"wall_s"`
	// OpsPerSec is Ops over the wall time (bounded by how fast the bench
	// makes them: one ip process per flap operation); OpsPerCPUSec is what
	// one core of ifmgrd's would absorb (Ops over its CPU time).
	OpsPerSec    float64 `json:"ops_per_s"`
	OpsPerCPUSec float64 `json:"ops_per_cpu_s"`
}

// eventProfiles: a bridge of its own per port, and one bridge for all.
var eventProfiles = []struct{ name, toml string }{
	{"per-port bridge", benchkit.PerPortProfile},
	{"one shared bridge", benchkit.SharedProfile},
}

// idleFor: ifmgrd counts as done when its CPU time has not moved for this
// long (the kernel counts it in 10 ms ticks).
const idleFor = time.Second

// events measures, per profile, at EventPorts ports made and bridged by
// ifmgrd: carrier flaps (the veth peer down and up, so the port's carrier
// goes off and on: nothing the planner reads changes), administrative flaps
// of the ports (the port down and up: only IFF_UP changes, which the planner
// reads but for a port already in its bridge acts on nothing), and deleting
// every port at once (ip -batch; ifmgrd then deletes the bridges).
func (b *bench) events() error {
	for _, p := range eventProfiles {
		rows, err := b.eventsRun(p.name, p.toml)
		if err != nil {
			return fmt.Errorf("events (%s): %w", p.name, err)
		}
		for _, r := range rows {
			fmt.Fprintf(os.Stderr, "bench: events %s N=%d %s: %d ops, cpu %.3f s (%.2f ms/op), wall %.3f s\n", r.Profile, r.Ports, r.Case, r.Ops, r.CPUSeconds, r.CPUPerOpMs, r.WallSeconds)
		}
		b.rep.Events = append(b.rep.Events, rows...)
	}
	return nil
}

func (b *bench) eventsRun(profile, toml string) ([]EventRate, error) {
	b.seq++
	ns, err := benchkit.NewNS(runNS)
	if err != nil {
		return nil, err
	}
	r := &runCtx{n: b.c.EventPorts, ns: ns,
		sock: b.c.path(fmt.Sprintf("ifmgr-%d.sock", b.seq)), db: b.c.path(fmt.Sprintf("ifmgr-%d.db", b.seq))}
	defer os.Remove(r.db)
	defer os.Remove(r.sock)
	rows, err := b.eventsIn(r, profile, toml)
	stopDaemon(r)
	if r.w != nil {
		r.w.Close()
	}
	if derr := ns.Delete(); err == nil {
		err = derr
	}
	if serr := b.settle(r.peers); err == nil {
		err = serr
	}
	return rows, err
}

func (b *bench) eventsIn(r *runCtx, profile, toml string) ([]EventRate, error) {
	var err error
	if r.w, err = benchkit.NewWatch(r.ns); err != nil {
		return nil, err
	}
	if err := makePorts(r); err != nil {
		return nil, err
	}
	prof := b.c.path(fmt.Sprintf("events-%d.toml", b.seq))
	if err := os.WriteFile(prof, []byte(toml), 0o644); err != nil {
		return nil, err
	}
	r.w.Expect(benchkit.BridgedPorts("lan", r.n))
	if err := b.startDaemon(r, filepath.Join(b.c.Bin, "ifmgrd"), nil, "--config", prof); err != nil {
		return nil, err
	}
	if _, err := r.w.Wait(10 * time.Minute); err != nil {
		return nil, err
	}
	peers := &benchkit.NS{Name: peersNS}
	// The peers up, so that each port has a carrier to lose.
	up := make([]string, r.n)
	for i := range up {
		up[i] = fmt.Sprintf("link set peer%d up", i)
	}
	if err := peers.Batch(up); err != nil {
		return nil, err
	}
	pid := r.daemon.Process.Pid
	if _, err := idle(pid, time.Now(), 5*time.Minute); err != nil {
		return nil, err
	}
	flaps := min(b.c.EventFlaps, r.n)
	var rows []EventRate
	measure := func(name string, ops int, work func() error, done func() error) error {
		if _, err := b.probe.WaitQuiet(2 * time.Minute); err != nil {
			return err
		}
		cpu0, err := cpuTime(pid)
		if err != nil {
			return err
		}
		t0 := time.Now()
		if err := work(); err != nil {
			return err
		}
		if done != nil {
			if err := done(); err != nil {
				return err
			}
		}
		end, err := idle(pid, time.Now(), 10*time.Minute)
		if err != nil {
			return err
		}
		cpu1, err := cpuTime(pid)
		if err != nil {
			return err
		}
		cpu, wall := (cpu1 - cpu0).Seconds(), end.Sub(t0).Seconds()
		rows = append(rows, EventRate{Profile: profile, Ports: r.n, Case: name, Ops: ops, CPUSeconds: cpu,
			CPUPerOpMs: 1000 * cpu / float64(ops), WallSeconds: wall, OpsPerSec: float64(ops) / wall, OpsPerCPUSec: float64(ops) / max(cpu, 0.01)})
		return nil
	}
	// One ip process per operation, as a port's carrier changes in life:
	// one at a time, each its own event.
	flap := func(ns *benchkit.NS, format string) func() error {
		return func() error {
			for i := range flaps {
				for _, state := range []string{"down", "up"} {
					if err := ns.IP(strings.Fields(fmt.Sprintf(format, i, state))...); err != nil {
						return err
					}
				}
			}
			return nil
		}
	}
	if err := measure(fmt.Sprintf("%d carrier flaps (peer down/up)", flaps), 2*flaps, flap(peers, "link set peer%d %s"), nil); err != nil {
		return nil, err
	}
	if err := measure(fmt.Sprintf("%d admin flaps (port down/up)", flaps), 2*flaps, flap(r.ns, "link set lan%d %s"), nil); err != nil {
		return nil, err
	}
	del := make([]string, r.n)
	for i := range del {
		del[i] = fmt.Sprintf("link del lan%d", i)
	}
	noBridges := func() error {
		return r.w.WaitFor(func(links map[uint32]kernel.Link) bool {
			for _, l := range links {
				if l.Kind == "bridge" {
					return false
				}
			}
			return true
		}, 10*time.Minute)
	}
	if err := measure(fmt.Sprintf("delete all %d ports (ip -batch)", r.n), r.n, func() error { return r.ns.Batch(del) }, noBridges); err != nil {
		return nil, err
	}
	return rows, nil
}

// cpuTime is a process's utime+stime (/proc/PID/stat fields 14 and 15, in
// USER_HZ ticks: 100 a second on every Linux architecture).
func cpuTime(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	// The command name (field 2) may hold spaces: count from its ')'.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64)
	st, err2 := strconv.ParseUint(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime %q %q", pid, f[11], f[12])
	}
	return time.Duration(ut+st) * 10 * time.Millisecond, nil
}

// idle waits until pid's CPU time stays unchanged for idleFor and returns
// when it last changed (from, if it never did).
func idle(pid int, from time.Time, timeout time.Duration) (time.Time, error) {
	last, err := cpuTime(pid)
	if err != nil {
		return time.Time{}, err
	}
	changed := from
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		now := time.Now()
		c, err := cpuTime(pid)
		if err != nil {
			return time.Time{}, err
		}
		if c != last {
			last, changed = c, now
			continue
		}
		if now.Sub(changed) >= idleFor {
			return changed, nil
		}
	}
	return time.Time{}, fmt.Errorf("ifmgrd (pid %d) still busy after %v", pid, timeout)
}
