package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/internal/benchkit"
	"golang.org/x/sys/unix"
)

// Latency is the time from a link's first RTM_NEWLINK to its derived
// bridge up with the link in it, over Events events, in milliseconds.
type Latency struct {
	Who string `json:"who"`
	// Phase: "new" (a port identity never seen: ifmgr commits its unit, one
	// fsync-bound DB transaction, before it makes the bridge), "known" (the
	// same port replugged: its unit is reserved, zero DB writes) or "fsync"
	// (the disk's own time for one write+fdatasync in the DB's directory,
	// measured in the same run; a bbolt commit makes two).
	Phase  string  `json:"phase,omitempty"`
	Events int     `json:"events"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
	// Commits: the DB commits ifmgrd made during the phase (ifmgrd only).
	Commits *uint64 `json:"commits,omitempty"`
}

// Latency phases.
const (
	phaseNew   = "new"
	phaseKnown = "known"
	phaseFsync = "fsync"
)

// latencyTimes is one contender's run: per-event latencies of both phases.
type latencyTimes struct {
	plugs, replugs             []time.Duration
	plugCommits, replugCommits *uint64
	fsyncs                     []time.Duration
}

// latency plugs links one at a time (new identities), then unplugs and
// replugs each (known identities). "kernel" is the bench itself doing the
// same four requests ifmgrd's plan needs (create the bridge, up, enslave
// the port, port up) as soon as it sees the link, and deleting the bridge
// when the port goes, as ifmgrd does: the kernel's own time plus one
// event's delivery. "ifmgrd" is the daemon with the per-port profile. The
// difference is ifmgr's overhead, per phase.
func (b *bench) latency() error {
	k, err := b.latencyRun(false)
	if err != nil {
		return fmt.Errorf("latency (kernel): %w", err)
	}
	m, err := b.latencyRun(true)
	if err != nil {
		return fmt.Errorf("latency (ifmgrd): %w", err)
	}
	for _, ph := range []struct {
		phase, what string
		k, m        []time.Duration
		commits     *uint64
	}{
		{phaseNew, "new port identity", k.plugs, m.plugs, m.plugCommits},
		{phaseKnown, "known port replugged", k.replugs, m.replugs, m.replugCommits},
	} {
		kl := summarize("kernel: the bench's own requests ("+ph.what+")", ph.k)
		ml := summarize("ifmgrd (profile, per-port bridge; "+ph.what+")", ph.m)
		kl.Phase, ml.Phase, ml.Commits = ph.phase, ph.phase, ph.commits
		over := Latency{Who: "ifmgr overhead (difference; " + ph.what + ")", Phase: ph.phase, Events: ml.Events,
			P50: ml.P50 - kl.P50, P99: ml.P99 - kl.P99, Max: ml.Max - kl.Max}
		b.rep.Latency = append(b.rep.Latency, kl, ml, over)
	}
	f := summarize("disk: one 4 KiB write + fdatasync in the DB's directory (a commit makes 2)", m.fsyncs)
	f.Phase = phaseFsync
	b.rep.Latency = append(b.rep.Latency, f)
	return nil
}

func summarize(who string, ds []time.Duration) Latency {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latency{Who: who, Events: len(ds), P50: ms(benchkit.Percentile(ds, 50)), P99: ms(benchkit.Percentile(ds, 99)), Max: ms(benchkit.Percentile(ds, 100))}
}

func (b *bench) latencyRun(daemon bool) (latencyTimes, error) {
	b.seq++
	var lt latencyTimes
	ns, err := benchkit.NewNS(runNS)
	if err != nil {
		return lt, err
	}
	r := &runCtx{n: b.c.Events, ns: ns, peers: b.c.Events,
		sock: b.c.path(fmt.Sprintf("ifmgr-%d.sock", b.seq)), db: b.c.path(fmt.Sprintf("ifmgr-%d.db", b.seq))}
	defer os.Remove(r.db)
	err = b.latencyIn(r, daemon, &lt)
	stopDaemon(r)
	if r.w != nil {
		r.w.Close()
	}
	ns.Delete()
	if serr := b.settle(r.peers); err == nil {
		err = serr
	}
	if err == nil && daemon {
		lt.fsyncs, err = fsyncTimes(filepath.Dir(r.db), b.c.Events)
	}
	return lt, err
}

func (b *bench) latencyIn(r *runCtx, daemon bool, lt *latencyTimes) error {
	var err error
	if r.w, err = benchkit.NewWatch(r.ns); err != nil {
		return err
	}
	if daemon {
		prof, err := b.profilePath()
		if err != nil {
			return err
		}
		if err := b.startDaemon(r, filepath.Join(b.c.Bin, "ifmgrd"), nil, "--config", prof); err != nil {
			return err
		}
		if err := waitSocket(r.sock, time.Minute); err != nil {
			return err
		}
	}
	// One ip process fed line by line plugs the links, so no process start
	// sits between two events.
	plug := exec.Command("ip", "-n", r.ns.Name, "-batch", "-")
	in, err := plug.StdinPipe()
	if err != nil {
		return err
	}
	plug.Stderr = os.Stderr
	if err := plug.Start(); err != nil {
		return err
	}
	defer func() { in.Close(); plug.Wait() }()
	bw := bufio.NewWriter(in)
	send := func(line string) error {
		fmt.Fprintln(bw, line)
		return bw.Flush()
	}
	r.w.Expect(benchkit.BridgedPorts("lan", 1<<30))
	if _, err := b.probe.WaitQuiet(2 * time.Minute); err != nil {
		return err
	}
	commits := func() *uint64 {
		if !daemon {
			return nil
		}
		c, err := api.Dial(r.sock)
		if err != nil {
			return nil
		}
		defer c.Close()
		st, err := c.Status()
		if err != nil {
			return nil
		}
		return &st.Commits
	}
	delta := func(a, b *uint64) *uint64 {
		if a == nil || b == nil {
			return nil
		}
		d := *b - *a
		return &d
	}

	c0 := commits()
	for i := range r.n {
		d, err := b.plugOnce(r, daemon, i, send)
		if err != nil {
			return err
		}
		lt.plugs = append(lt.plugs, d)
	}
	c1 := commits()
	for i := range r.n {
		if err := b.unplugOnce(r, daemon, i, send); err != nil {
			return err
		}
		d, err := b.plugOnce(r, daemon, i, send)
		if err != nil {
			return err
		}
		lt.replugs = append(lt.replugs, d)
	}
	c2 := commits()
	lt.plugCommits, lt.replugCommits = delta(c0, c1), delta(c1, c2)
	return nil
}

// plugOnce plugs lanI and returns the time from its first event until it is
// up in an up bridge.
func (b *bench) plugOnce(r *runCtx, daemon bool, i int, send func(string) error) (time.Duration, error) {
	port := fmt.Sprintf("lan%d", i)
	if err := send(fmt.Sprintf("link add %s type veth peer name peer%d netns %s", port, i, peersNS)); err != nil {
		return 0, err
	}
	l, seen, err := r.w.WaitSeen(port, time.Minute)
	if err != nil {
		return 0, err
	}
	if !daemon {
		conn := r.w.Conn()
		br, err := conn.CreateBridge(fmt.Sprintf("br%d", i), ownerGroup)
		if err == nil {
			err = conn.SetUp(br.Index, true)
		}
		if err == nil {
			err = conn.SetMaster(l.Index, br.Index)
		}
		if err == nil {
			err = conn.SetUp(l.Index, true)
		}
		if err != nil {
			return 0, err
		}
	}
	met, err := r.w.WaitMet(port, time.Minute)
	if err != nil {
		return 0, err
	}
	return met.Sub(seen), nil
}

// unplugOnce deletes lanI (its peer goes with it) and waits until its bridge
// is gone too (ifmgrd deletes a per-port bridge whose port left; the kernel
// contender deletes it itself), then forgets the name's times so that its
// replug is timed afresh.
func (b *bench) unplugOnce(r *runCtx, daemon bool, i int, send func(string) error) error {
	port := fmt.Sprintf("lan%d", i)
	l, _, err := r.w.WaitSeen(port, time.Minute)
	if err != nil {
		return err
	}
	if err := send("link del " + port); err != nil {
		return err
	}
	if !daemon && l.Master != 0 {
		if err := r.w.Conn().Delete(l.Master); err != nil {
			return fmt.Errorf("delete br%d: %w", i, err)
		}
	}
	if err := r.w.WaitFor(func(links map[uint32]kernel.Link) bool {
		_, port := links[l.Index]
		_, master := links[l.Master]
		return !port && (l.Master == 0 || !master)
	}, time.Minute); err != nil {
		return fmt.Errorf("unplug %s: %w", port, err)
	}
	if daemon {
		// ifmgrd deleted the bridge on its owner goroutine, and the kernel
		// finishes unregistering a link (an RCU barrier, tens of ms) in the
		// deleting thread after the watcher has seen it go: a request to
		// the owner is answered only once that is over, as the kernel
		// contender's own Delete above returned only then. Without this
		// the replug's time included the previous unplug's.
		c, err := api.Dial(r.sock)
		if err != nil {
			return err
		}
		_, err = c.Status()
		c.Close()
		if err != nil {
			return fmt.Errorf("status after unplugging %s: %w", port, err)
		}
	}
	r.w.Forget(port)
	return nil
}

// fsyncTimes measures the disk under dir as a commit meets it: n times a
// 4 KiB write and an fdatasync of the same file.
func fsyncTimes(dir string, n int) ([]time.Duration, error) {
	f, err := os.CreateTemp(dir, "fsync-probe-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 4096)
	var ds []time.Duration
	for i := range n {
		buf[0] = byte(i)
		t0 := time.Now()
		if _, err := f.WriteAt(buf, int64(i%16)*4096); err != nil {
			return nil, err
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			return nil, err
		}
		ds = append(ds, time.Since(t0))
	}
	return ds, nil
}
