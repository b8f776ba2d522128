package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/internal/benchkit"
)

// The bench's namespaces (-ns-prefix renames them, so that two benches can
// run on one host without deleting each other's).
var (
	runNS   = "ubench-run"
	peersNS = "ubench-peers"
	probeNS = "ubench-probe"
)

const (
	// ownerGroup is ifmgrd's default IFLA_GROUP; the ip contenders stamp it
	// too, so every contender sends the same attributes.
	ownerGroup = ifmgr.DefaultOwnerGroup
)

type bench struct {
	c      config
	rep    *Report
	probe  *benchkit.Prober
	peers  *benchkit.NS
	pwatch *benchkit.Watch
	seq    int
	save   func() // writes the JSON so far: a run cut short keeps its sections
}

func newBench(c config, rep *Report) (*bench, error) {
	b := &bench{c: c, rep: rep}
	var err error
	if b.probe, err = benchkit.NewProber(probeNS); err != nil {
		return nil, err
	}
	// The far ends of the veth ports live in a namespace of their own: the
	// measured namespace holds only what is measured, and its teardown
	// visibly ends when the peers vanish here.
	if b.peers, err = benchkit.NewNS(peersNS); err != nil {
		b.close()
		return nil, err
	}
	if b.pwatch, err = benchkit.NewWatch(b.peers); err != nil {
		b.close()
		return nil, err
	}
	rep.Machine["rtnl_probe_baseline"] = b.probe.Baseline.String()
	return b, nil
}

func (b *bench) close() {
	if b.pwatch != nil {
		b.pwatch.Close()
	}
	if b.peers != nil {
		b.peers.Delete()
	}
	if b.probe != nil {
		b.probe.Close()
	}
	exec.Command("ip", "netns", "del", runNS).Run()
}

func (b *bench) run() error {
	for _, n := range b.c.Ns {
		if b.c.Sections["bringup"] {
			if err := b.section("bringup", n, b.bringupContenders(n)); err != nil {
				return err
			}
			b.save()
		}
		if b.c.Sections["create"] {
			if err := b.section("create", n, b.createContenders()); err != nil {
				return err
			}
			b.save()
		}
	}
	if b.c.Sections["teardown"] {
		for _, n := range b.c.TearNs {
			if err := b.section("teardown", n, b.teardownContenders()); err != nil {
				return err
			}
			b.save()
		}
	}
	if b.c.Sections["latency"] {
		if err := b.latency(); err != nil {
			return err
		}
		b.save()
	}
	if b.c.Sections["where"] {
		if err := b.where(); err != nil {
			return err
		}
		b.save()
	}
	if b.c.Sections["events"] {
		if err := b.events(); err != nil {
			return err
		}
		b.save()
	}
	if b.c.Sections["footprint"] {
		if err := b.footprint(); err != nil {
			return err
		}
	}
	return nil
}

// contender is one way of doing a section's work. setup runs untimed in the
// fresh namespace; run is timed and returns the time the work took.
type contender struct {
	name     string
	baseline bool // ratios are taken to this one
	slow     bool // skipped above -slow-max
	setup    func(r *runCtx) error
	run      func(r *runCtx) (time.Duration, error)
	extra    func(r *runCtx) any // read after run, before teardown
}

// runCtx is one measurement's namespace and what runs in it.
type runCtx struct {
	n      int
	ns     *benchkit.NS
	w      *benchkit.Watch
	daemon *exec.Cmd
	sock   string
	db     string
	peers  int    // veth peers to wait for at teardown
	perf   string // perf.data of the timed run ("" for none: -perf-dir)
}

func (b *bench) section(name string, n int, cs []contender) error {
	times := map[string][]float64{}
	extras := map[string]any{}
	reps := b.c.Reps
	if n > 1000 {
		reps = 1 // the N=4000 runs take minutes each on a shared machine
	}
	for rep := range reps {
		for _, c := range cs {
			if c.slow && n > b.c.SlowMax {
				continue
			}
			d, extra, err := b.once(n, c)
			if err != nil {
				return fmt.Errorf("%s N=%d %s (rep %d): %w", name, n, c.name, rep+1, err)
			}
			fmt.Fprintf(os.Stderr, "bench: %s N=%d %s: %.3f s\n", name, n, c.name, d.Seconds())
			times[c.name] = append(times[c.name], d.Seconds())
			if extra != nil {
				extras[c.name] = extra
			}
		}
	}
	var base float64
	var baseName string
	for _, c := range cs {
		if c.baseline {
			base, baseName = median(times[c.name]), c.name
		}
	}
	for _, c := range cs {
		ts := times[c.name]
		if len(ts) == 0 {
			continue
		}
		r := Result{Section: name, Contender: c.name, N: n, Seconds: ts, Median: median(ts), Baseline: baseName, Extra: extras[c.name]}
		if base > 0 {
			r.Ratio = r.Median / base
		}
		b.rep.Results = append(b.rep.Results, r)
	}
	return nil
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// once makes a fresh namespace, sets it up, waits for RTNL to be quiet,
// measures, and tears the namespace down, waiting for the kernel to finish.
func (b *bench) once(n int, c contender) (time.Duration, any, error) {
	b.seq++
	ns, err := benchkit.NewNS(runNS)
	if err != nil {
		return 0, nil, err
	}
	r := &runCtx{n: n, ns: ns,
		sock: b.c.path(fmt.Sprintf("ifmgr-%d.sock", b.seq)),
		db:   b.c.path(fmt.Sprintf("ifmgr-%d.db", b.seq))}
	if b.c.PerfDir != "" {
		r.perf = filepath.Join(b.c.PerfDir, fmt.Sprintf("%03d-%s.data", b.seq, strings.NewReplacer(" ", "_", "/", "_").Replace(c.name)))
	}
	defer os.Remove(r.db)
	defer os.Remove(r.sock)
	d, extra, err := b.measure(r, c)
	stopDaemon(r)
	if r.w != nil {
		r.w.Close()
	}
	if derr := ns.Delete(); err == nil {
		err = derr
	}
	if werr := b.settle(r.peers); err == nil {
		err = werr
	}
	return d, extra, err
}

func (b *bench) measure(r *runCtx, c contender) (time.Duration, any, error) {
	var err error
	if r.w, err = benchkit.NewWatch(r.ns); err != nil {
		return 0, nil, err
	}
	if c.setup != nil {
		if err := c.setup(r); err != nil {
			return 0, nil, fmt.Errorf("setup: %w", err)
		}
	}
	if _, err := b.probe.WaitQuiet(2 * time.Minute); err != nil {
		return 0, nil, err
	}
	d, err := c.run(r)
	if err != nil {
		return 0, nil, err
	}
	var extra any
	if c.extra != nil {
		extra = c.extra(r)
	}
	return d, extra, nil
}

// settle waits until the deleted namespace's links are gone (its veth peers
// vanish from the peers namespace when its devices are unregistered) and the
// RTNL lock answers fast again.
func (b *bench) settle(peers int) error {
	if err := b.pwatch.WaitCount("peer", 0, 5*time.Minute); err != nil {
		return fmt.Errorf("namespace teardown: %w", err)
	}
	_, err := b.probe.WaitQuiet(5 * time.Minute)
	return err
}

func stopDaemon(r *runCtx) {
	if r.daemon == nil || r.daemon.Process == nil {
		return
	}
	r.daemon.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { r.daemon.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		r.daemon.Process.Kill()
		<-done
	}
	r.daemon = nil
}

// makePorts creates n veth ports lanI whose peers go to the peers namespace.
func makePorts(r *runCtx) error {
	lines := make([]string, r.n)
	for i := range r.n {
		lines[i] = fmt.Sprintf("link add lan%d type veth peer name peer%d netns %s", i, i, peersNS)
	}
	r.peers = r.n
	if err := r.ns.Batch(lines); err != nil {
		return err
	}
	return r.w.WaitCount("lan", r.n, 5*time.Minute)
}

func bringupLines(n int) []string {
	var lines []string
	for i := range n {
		lines = append(lines,
			fmt.Sprintf("link add br%d group %d type bridge", i, ownerGroup),
			fmt.Sprintf("link set lan%d master br%d", i, i),
			fmt.Sprintf("link set br%d up", i),
			fmt.Sprintf("link set lan%d up", i))
	}
	return lines
}

// timed runs start, then waits for the goal; the work ends when both the
// process has returned and the kernel shows the goal.
func timed(r *runCtx, g benchkit.Goal, start func() error) (time.Duration, error) {
	r.w.Expect(g)
	if r.perf != "" {
		p, err := startPerf(r.perf)
		if err != nil {
			return 0, fmt.Errorf("perf: %w", err)
		}
		defer p.stop()
	}
	t0 := time.Now()
	if err := start(); err != nil {
		return 0, err
	}
	returned := time.Now()
	met, err := r.w.Wait(10 * time.Minute)
	if err != nil {
		return 0, err
	}
	if met.Before(returned) {
		met = returned
	}
	return met.Sub(t0), nil
}

func (b *bench) startDaemon(r *runCtx, bin string, pre []string, args ...string) error {
	all := append(pre, append([]string{"--db", r.db, "--socket", r.sock, "--log-level", "warn"}, args...)...)
	r.daemon = r.ns.Command(bin, all...)
	r.daemon.Stdout = os.Stderr
	r.daemon.Stderr = os.Stderr
	return r.daemon.Start()
}

func waitSocket(path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if c, err := api.Dial(path); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("ifmgrd socket %s not up after %v", path, timeout)
}

func (b *bench) profilePath() (string, error) {
	p := b.c.path("per-port.toml")
	return p, os.WriteFile(p, []byte(benchkit.PerPortProfile), 0o644)
}

func (b *bench) bringupContenders(n int) []contender {
	ifmgrd := filepath.Join(b.c.Bin, "ifmgrd")
	cs := []contender{
		{name: "ifmgrd profile", setup: makePorts, run: func(r *runCtx) (time.Duration, error) {
			prof, err := b.profilePath()
			if err != nil {
				return 0, err
			}
			return timed(r, benchkit.BridgedPorts("lan", r.n), func() error {
				return b.startDaemon(r, ifmgrd, nil, "--config", prof)
			})
		}, extra: func(r *runCtx) any { return daemonFigures(r) }},
		{name: "ip -batch", baseline: true, setup: makePorts, run: func(r *runCtx) (time.Duration, error) {
			lines := bringupLines(r.n)
			return timed(r, benchkit.BridgedPorts("lan", r.n), func() error { return r.ns.Batch(lines) })
		}},
		{name: "ip per op", slow: true, setup: makePorts, run: func(r *runCtx) (time.Duration, error) {
			lines := bringupLines(r.n)
			return timed(r, benchkit.BridgedPorts("lan", r.n), func() error { return ipPerOp(r.ns, lines) })
		}},
	}
	if b.c.Networkd != "" {
		cs = append(cs, contender{name: "systemd-networkd", slow: true, setup: makePorts, run: b.networkd})
	}
	return cs
}

func ipPerOp(ns *benchkit.NS, lines []string) error {
	for _, l := range lines {
		if err := ns.IP(strings.Fields(l)...); err != nil {
			return err
		}
	}
	return nil
}

// daemonFigures reads what ifmgrd says of itself after the work: commits,
// DB size, RSS.
func daemonFigures(r *runCtx) any {
	out := map[string]any{}
	if c, err := api.Dial(r.sock); err == nil {
		if st, err := c.Status(); err == nil {
			out["commits"] = st.Commits
			out["db_bytes"] = st.DBSize
			out["managed"] = st.Managed
		}
		c.Close()
	}
	if r.daemon != nil && r.daemon.Process != nil {
		if rss, threads, err := benchkit.ProcStatus(r.daemon.Process.Pid); err == nil {
			out["rss_bytes"] = rss
			out["threads"] = threads
		}
	}
	return out
}

// networkd runs Debian's systemd-networkd in the namespace. `ip netns exec`
// already gives it a mount namespace with this namespace's /sys; on top:
// the generated .netdev/.network files bind-mounted over
// /etc/systemd/network, a tmpfs on /run/systemd (its state, none of the
// host's), and /sys read-only, which networkd takes as "in a container, no
// udev to wait for" (udev does not run in the namespace).
func (b *bench) networkd(r *runCtx) (time.Duration, error) {
	conf := b.c.path(fmt.Sprintf("networkd-%d", r.n))
	if _, err := os.Stat(conf); err != nil {
		tmp := conf + ".tmp"
		os.RemoveAll(tmp)
		if err := os.MkdirAll(tmp, 0o755); err != nil {
			return 0, err
		}
		files := map[string]string{
			"00-bridges.network": "[Match]\nName=br*\n\n[Network]\nLinkLocalAddressing=no\nIPv6AcceptRA=no\nConfigureWithoutCarrier=yes\n",
		}
		for i := range r.n {
			files[fmt.Sprintf("br%d.netdev", i)] = fmt.Sprintf("[NetDev]\nName=br%d\nKind=bridge\n", i)
			files[fmt.Sprintf("10-lan%d.network", i)] = fmt.Sprintf("[Match]\nName=lan%d\n\n[Network]\nBridge=br%d\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n", i, i)
		}
		for name, text := range files {
			if err := os.WriteFile(filepath.Join(tmp, name), []byte(text), 0o644); err != nil {
				return 0, err
			}
		}
		if err := os.Rename(tmp, conf); err != nil {
			return 0, err
		}
	}
	script := fmt.Sprintf(`set -e
mount -t tmpfs -o mode=0755 tmpfs /run/systemd
mkdir -p /run/systemd/netif
chown systemd-network:systemd-network /run/systemd/netif
mount --bind %q /etc/systemd/network
mount -o remount,ro /sys
exec %q`, conf, b.c.Networkd)
	return timed(r, benchkit.BridgedPorts("lan", r.n), func() error {
		r.daemon = r.ns.Command("sh", "-c", script)
		log, err := os.Create(b.c.path("networkd.log"))
		if err != nil {
			return err
		}
		r.daemon.Stdout, r.daemon.Stderr = log, log
		r.daemon.Env = append(os.Environ(), "SYSTEMD_LOG_LEVEL=warning")
		return r.daemon.Start()
	})
}

func (b *bench) createContenders() []contender {
	ifmgrd := filepath.Join(b.c.Bin, "ifmgrd")
	return []contender{
		{name: "ifctl create x16 conns",
			setup: func(r *runCtx) error {
				if err := b.startDaemon(r, ifmgrd, nil); err != nil {
					return err
				}
				return waitSocket(r.sock, time.Minute)
			},
			run: func(r *runCtx) (time.Duration, error) {
				return timed(r, benchkit.UpBridges("bridge", r.n), func() error { return createOverSocket(r.sock, r.n, 16) })
			},
			extra: func(r *runCtx) any { return daemonFigures(r) }},
		// ip -batch's counterpart: one ifctl process, one connection, one
		// line per create, pipelined; each create still committed before
		// its link is made and answered.
		{name: "ifctl -batch",
			setup: func(r *runCtx) error {
				if err := b.startDaemon(r, ifmgrd, nil); err != nil {
					return err
				}
				return waitSocket(r.sock, time.Minute)
			},
			run: func(r *runCtx) (time.Duration, error) {
				script := strings.Repeat("create bridge\n", r.n)
				return timed(r, benchkit.UpBridges("bridge", r.n), func() error {
					cmd := exec.Command(filepath.Join(b.c.Bin, "ifctl"), "--socket", r.sock, "-batch", "-")
					cmd.Stdin = strings.NewReader(script)
					cmd.Stdout = io.Discard
					cmd.Stderr = os.Stderr
					if err := cmd.Run(); err != nil {
						return fmt.Errorf("ifctl -batch: %w", err)
					}
					return nil
				})
			},
			extra: func(r *runCtx) any { return daemonFigures(r) }},
		{name: "ip -batch", baseline: true, run: func(r *runCtx) (time.Duration, error) {
			var lines []string
			for i := range r.n {
				lines = append(lines, fmt.Sprintf("link add bridge%d group %d type bridge", i, ownerGroup), fmt.Sprintf("link set bridge%d up", i))
			}
			return timed(r, benchkit.UpBridges("bridge", r.n), func() error { return r.ns.Batch(lines) })
		}},
	}
}

// createOverSocket asks for n bridges over conns concurrent connections, as
// many clients (ifctl runs, a management agent) would.
func createOverSocket(sock string, n, conns int) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := api.Dial(sock)
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			for next.Add(1) <= int64(n) {
				if _, err := c.Create("bridge", "", 0); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return errors.Join(slices.Collect(chanSeq(errs))...)
}

func chanSeq[T any](c chan T) func(func(T) bool) {
	return func(yield func(T) bool) {
		for v := range c {
			if !yield(v) {
				return
			}
		}
	}
}

func (b *bench) teardownContenders() []contender {
	setup := func(r *runCtx) error {
		var lines []string
		for i := range r.n {
			lines = append(lines, fmt.Sprintf("link add bridge%d group %d type bridge", i, ownerGroup), fmt.Sprintf("link set bridge%d up", i))
		}
		if err := r.ns.Batch(lines); err != nil {
			return err
		}
		return r.w.WaitCount("bridge", r.n, 5*time.Minute)
	}
	gone := func(r *runCtx, start func() error) (time.Duration, error) {
		t0 := time.Now()
		if err := start(); err != nil {
			return 0, err
		}
		if err := r.w.WaitCount("bridge", 0, 10*time.Minute); err != nil {
			return 0, err
		}
		return time.Since(t0), nil
	}
	dels := func(n int) []string {
		lines := make([]string, n)
		for i := range n {
			lines[i] = fmt.Sprintf("link del bridge%d", i)
		}
		return lines
	}
	return []contender{
		{name: "one RTM_DELLINK for the group", setup: setup, run: func(r *runCtx) (time.Duration, error) {
			return gone(r, func() error { return r.ns.IP("link", "del", "group", fmt.Sprint(ownerGroup)) })
		}},
		{name: "ip -batch del", setup: setup, run: func(r *runCtx) (time.Duration, error) {
			return gone(r, func() error { return r.ns.Batch(dels(r.n)) })
		}},
		{name: "ip link del per link", baseline: true, slow: true, setup: setup, run: func(r *runCtx) (time.Duration, error) {
			return gone(r, func() error { return ipPerOp(r.ns, dels(r.n)) })
		}},
	}
}
