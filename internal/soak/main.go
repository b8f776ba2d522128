// Command soak (scripts/soak) churns links under ifmgrd in a throw-away
// network namespace for a given time: flaps, MAC changes, unplugs and
// replugs of known port identities, and plugs of new ones. The ports are
// veths, which have no permanent MAC: by board/README.md's "Identities" a
// port's identity is then its kernel name, never its current MAC. So a
// known identity keeps its name across replugs and gets a new MAC at each
// (as a USB gadget that makes one up does), and its MAC also changes while
// plugged; a rename would make it a new identity, which the new-identity
// phase of every cycle covers. It samples the daemon
// (RSS, goroutines, open fds, DB size, commits, units) to a CSV and a PNG,
// and at the end asserts what years of uptime need: zero DB commits for
// known identities, units in use back to baseline, RSS growth under 1 MB
// after warm-up, goroutines and fds constant, the DB bounded.
package main

import (
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/internal/benchkit"
	"golang.org/x/sys/unix"
)

type sample struct {
	T          float64
	Cycles     int
	NewIDs     int
	RSS        int64
	HeapAlloc  uint64
	Goroutines int
	FDs        int
	Threads    int
	DBBytes    int64
	Commits    uint64
	Allocated  int
	Held       int
	Managed    int
}

// Summary is soak.json (one definition, read back by internal/results).
type Summary = benchkit.SoakSummary

type soak struct {
	ns      *benchkit.NS
	w       *benchkit.Watch
	sock    string
	dbg     string
	db      string
	daemon  *exec.Cmd
	rng     *rand.Rand
	k       int
	port    []string // known identities: the kernel name of port i
	name    []string // port[i] while plugged, "" if unplugged
	macs    int      // MACs handed out to known ports so far
	serial  int
	ops     int
	newIDs  int
	known   uint64 // commits seen during known-identity phases
	cycles  int
	start   time.Time
	samples []sample
}

func main() {
	duration := flag.Duration("duration", 5*time.Minute, "how long to churn")
	bin := flag.String("bin", "", "directory with ifmgrd-debug")
	out := flag.String("out", "soak-out", "directory for soak.csv, soak.png, soak.json")
	every := flag.Duration("sample", 5*time.Second, "sampling interval")
	ports := flag.Int("ports", 16, "known port identities")
	seed := flag.Uint64("seed", 1, "random seed")
	flag.Parse()
	if *bin == "" {
		fatal(fmt.Errorf("-bin is required (scripts/soak builds it)"))
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fatal(err)
	}
	work, err := os.MkdirTemp("", "uroute-soak.")
	if err != nil {
		fatal(err)
	}
	defer os.RemoveAll(work)
	s := &soak{rng: rand.New(rand.NewPCG(*seed, 7)), k: *ports,
		sock: filepath.Join(work, "ifmgr.sock"), dbg: filepath.Join(work, "debug.sock"), db: filepath.Join(work, "ifmgr.db")}
	sum := &Summary{Command: strings.Join(os.Args, " "), Date: time.Now().UTC().Format(time.RFC3339),
		CSV: filepath.Join(*out, "soak.csv"), PNG: filepath.Join(*out, "soak.png")}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		sum.Load = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	// Interrupted, the soak still removes its namespace and daemon.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		s.close()
		os.RemoveAll(work)
		os.Exit(130)
	}()
	err = s.run(*bin, work, *duration, *every, sum)
	s.close()
	if err != nil {
		fatal(err)
	}
	if err := s.write(sum); err != nil {
		fatal(err)
	}
	data, _ := json.MarshalIndent(sum, "", "  ")
	os.WriteFile(filepath.Join(*out, "soak.json"), append(data, '\n'), 0o644)
	fmt.Printf("%s\n", data)
	if len(sum.Failures) > 0 {
		for _, f := range sum.Failures {
			fmt.Fprintln(os.Stderr, "soak: FAIL:", f)
		}
		os.Exit(1)
	}
	fmt.Println("soak: ok")
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "soak:", err)
	os.Exit(1)
}

func (s *soak) close() {
	if s.daemon != nil && s.daemon.Process != nil {
		s.daemon.Process.Signal(syscall.SIGTERM)
		s.daemon.Wait()
	}
	if s.w != nil {
		s.w.Close()
	}
	if s.ns != nil {
		s.ns.Delete()
	}
}

func (s *soak) run(bin, work string, duration, every time.Duration, sum *Summary) error {
	var err error
	if s.ns, err = benchkit.NewNS(fmt.Sprintf("usoak-%d", os.Getpid())); err != nil {
		return err
	}
	if s.w, err = benchkit.NewWatch(s.ns); err != nil {
		return err
	}
	prof := filepath.Join(work, "soak.toml")
	os.WriteFile(prof, []byte("board = \"soak\"\n[[port]]\nname = \"lan\"\nmatch.name = \"lan*\"\nbridge = \"lan\"\n[[bridge]]\nname = \"lan\"\nper_port = true\n"), 0o644)
	s.daemon = s.ns.Command(filepath.Join(bin, "ifmgrd-debug"), "-debug-socket", s.dbg, "--",
		"--config", prof, "--db", s.db, "--socket", s.sock, "--log-level", "warn")
	s.daemon.Stdout, s.daemon.Stderr = os.Stderr, os.Stderr
	if err := s.daemon.Start(); err != nil {
		return err
	}
	if err := waitSocket(s.sock); err != nil {
		return err
	}
	for i := range s.k {
		s.port = append(s.port, s.fresh())
		s.name = append(s.name, "")
		if err := s.plug(i); err != nil {
			return err
		}
	}
	if err := s.converged(); err != nil {
		return err
	}
	if err := s.fillReservations(); err != nil {
		return err
	}
	s.start = time.Now()
	first, err := s.sample()
	if err != nil {
		return err
	}
	sum.UnitsStart = first.Allocated
	next := time.Now().Add(every)
	for time.Since(s.start) < duration {
		if err := s.cycle(); err != nil {
			return fmt.Errorf("cycle %d: %w", s.cycles, err)
		}
		if time.Now().After(next) {
			next = time.Now().Add(every)
			if _, err := s.sample(); err != nil {
				return err
			}
		}
	}
	// Everything known plugged back: the router's ports as at the start.
	for i := range s.k {
		if s.name[i] == "" {
			if err := s.plug(i); err != nil {
				return err
			}
		}
	}
	if err := s.converged(); err != nil {
		return err
	}
	time.Sleep(time.Second)
	if _, err := s.sample(); err != nil {
		return err
	}
	s.judge(sum)
	return nil
}

func waitSocket(path string) error {
	for range 600 {
		if c, err := api.Dial(path); err == nil {
			c.Close()
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("ifmgrd socket %s not up", path)
}

func (s *soak) ip(args ...string) error {
	s.ops++
	return s.ns.IP(args...)
}

func (s *soak) fresh() string {
	s.serial++
	return fmt.Sprintf("lan%d", s.serial)
}

// plug adds known port i under its name, with a MAC it never had.
func (s *soak) plug(i int) error {
	name := s.port[i]
	s.name[i] = name
	return s.ip("link", "add", name, "address", s.knownMAC(), "type", "veth", "peer", "name", "sp"+strings.TrimPrefix(name, "lan"))
}

// knownMAC is a MAC no known port had before (02:5a:..., apart from the
// new identities' 02:5b:...).
func (s *soak) knownMAC() string {
	s.macs++
	n := s.macs
	return fmt.Sprintf("02:5a:%02x:%02x:%02x:%02x", n>>24&0xff, n>>16&0xff, n>>8&0xff, n&0xff)
}

func (s *soak) pick(plugged bool) int {
	var c []int
	for i := range s.k {
		if (s.name[i] != "") == plugged {
			c = append(c, i)
		}
	}
	if len(c) == 0 {
		return -1
	}
	return c[s.rng.IntN(len(c))]
}

func (s *soak) commits() (uint64, error) {
	c, err := api.Dial(s.sock)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	st, err := c.Status()
	return st.Commits, err
}

// cycle: a phase that touches only known identities (which must commit
// nothing), then one new identity plugged and unplugged.
func (s *soak) cycle() error {
	c0, err := s.commits()
	if err != nil {
		return err
	}
	if i := s.pick(true); i >= 0 { // flap
		if err := s.ip("link", "set", s.name[i], "down"); err != nil {
			return err
		}
		if err := s.ip("link", "set", s.name[i], "up"); err != nil {
			return err
		}
	}
	if i := s.pick(true); i >= 0 { // MAC change: same port, new address
		// Down and up around it, as an operator would: ifmgrd brings a
		// port up only when it takes it in, and respects an operator's
		// down after that (plan.BringUp).
		name := s.name[i]
		if err := s.ip("link", "set", name, "down"); err != nil {
			return err
		}
		if err := s.ip("link", "set", name, "address", s.knownMAC()); err != nil {
			return err
		}
		if err := s.ip("link", "set", name, "up"); err != nil {
			return err
		}
	}
	plugged := 0
	for _, n := range s.name {
		if n != "" {
			plugged++
		}
	}
	if i := s.pick(true); i >= 0 && plugged > s.k/2 { // unplug
		if err := s.ip("link", "del", s.name[i]); err != nil {
			return err
		}
		s.name[i] = ""
	}
	if i := s.pick(false); i >= 0 { // replug a known identity, with a new MAC
		if err := s.plug(i); err != nil {
			return err
		}
	}
	if err := s.converged(); err != nil {
		return err
	}
	c1, err := s.commits()
	if err != nil {
		return err
	}
	s.known += c1 - c0

	s.newIDs++
	name := s.fresh()
	if err := s.ip("link", "add", name, "address", s.newMAC(), "type", "veth", "peer", "name", "sp"+strings.TrimPrefix(name, "lan")); err != nil {
		return err
	}
	if err := s.convergedWith(name); err != nil {
		return err
	}
	if err := s.ip("link", "del", name); err != nil {
		return err
	}
	if err := s.converged(); err != nil {
		return err
	}
	s.cycles++
	return nil
}

// fillReservations plugs and unplugs ifmgr.DefaultMaxAbsent new identities
// in two batches before the timed churn: ifmgrd keeps that many units
// reserved for absent hardware and retires the oldest beyond it, so from
// then on the reservations are at their plateau, however few cycles a
// loaded machine manages. Without it a short soak on a slow host could end
// before the plateau, and the DB and RSS after warm-up would be judged
// while they still grow by design.
func (s *soak) fillReservations() error {
	var add, del []string
	var names []string
	for range ifmgr.DefaultMaxAbsent {
		s.newIDs++
		name := s.fresh()
		names = append(names, name)
		add = append(add, fmt.Sprintf("link add %s address %s type veth peer name sp%s", name, s.newMAC(), strings.TrimPrefix(name, "lan")))
		del = append(del, "link del "+name)
	}
	s.ops += len(add)
	if err := s.ns.Batch(add); err != nil {
		return err
	}
	if err := s.convergedWith(names...); err != nil {
		return fmt.Errorf("filling the reservations: %w", err)
	}
	s.ops += len(del)
	if err := s.ns.Batch(del); err != nil {
		return err
	}
	return s.converged()
}

// newMAC is the MAC of new identity s.newIDs.
func (s *soak) newMAC() string {
	n := s.newIDs
	return fmt.Sprintf("02:5b:%02x:%02x:%02x:%02x", n>>24&0xff, n>>16&0xff, n>>8&0xff, n&0xff)
}

func (s *soak) converged() error { return s.convergedWith() }

// convergeWait bounds a wait for ifmgrd to converge: a hung daemon, not
// a speed check (CI runs the soak beside two QEMU guests, and bridge
// teardown waits on RCU grace periods, which a loaded host stretches).
const convergeWait = 5 * time.Minute

// convergedWith waits until every plugged port (and each extra) is up in
// an up bridge of its own and no other bridge is left.
func (s *soak) convergedWith(extra ...string) error {
	want := map[string]bool{}
	for _, n := range s.name {
		if n != "" {
			want[n] = true
		}
	}
	for _, n := range extra {
		want[n] = true
	}
	var last string // what the last look saw, for the error
	err := s.w.WaitFor(func(links map[uint32]kernel.Link) bool {
		bridges, ok := 0, 0
		var notYet []string
		for _, l := range links {
			if l.Kind == "bridge" {
				bridges++
			}
			if !want[l.Name] {
				continue
			}
			if m, found := links[l.Master]; found && m.Kind == "bridge" && m.Flags&unix.IFF_UP != 0 && l.Flags&unix.IFF_UP != 0 {
				ok++
			} else {
				notYet = append(notYet, l.Name)
			}
		}
		slices.Sort(notYet)
		last = fmt.Sprintf("%d of %d ports up in an up bridge (not: %.200v), %d bridges", ok, len(want), notYet, bridges)
		return ok == len(want) && bridges == len(want)
	}, convergeWait)
	if err != nil {
		return fmt.Errorf("ifmgrd did not converge on %d ports: %w; last seen: %s", len(want), err, last)
	}
	return nil
}

func (s *soak) sample() (sample, error) {
	x := sample{T: time.Since(s.start).Seconds(), Cycles: s.cycles, NewIDs: s.newIDs}
	// A request's connection goroutine and socket, or a link event being
	// handled, come and go around a sample; a leak stays. So goroutines
	// and fds are the least of five readings 100 ms apart, taken before
	// this sample's own status request.
	pid := s.daemon.Process.Pid
	for i := range 5 {
		time.Sleep(100 * time.Millisecond)
		d, err := benchkit.ReadDebug(s.dbg)
		if err != nil {
			return x, err
		}
		fds, err := benchkit.OpenFDs(pid)
		if err != nil {
			return x, err
		}
		if i == 0 || d.Goroutines < x.Goroutines {
			x.Goroutines = d.Goroutines
		}
		if i == 0 || fds < x.FDs {
			x.FDs = fds
		}
		x.HeapAlloc = d.HeapAlloc
	}
	var err error
	if x.RSS, x.Threads, err = benchkit.ProcStatus(pid); err != nil {
		return x, err
	}
	c, err := api.Dial(s.sock)
	if err != nil {
		return x, err
	}
	st, err := c.Status()
	c.Close()
	if err != nil {
		return x, err
	}
	x.DBBytes, x.Commits = st.DBSize, st.Commits
	for _, cl := range st.Cloners {
		if cl.Name == "bridge" {
			x.Allocated, x.Held = cl.Allocated, cl.Held
		}
	}
	x.Managed = st.Managed["bridge"]
	s.samples = append(s.samples, x)
	fmt.Fprintf(os.Stderr, "soak: t=%.0fs cycles=%d new=%d rss=%d goroutines=%d fds=%d db=%d commits=%d units=%d\n",
		x.T, x.Cycles, x.NewIDs, x.RSS, x.Goroutines, x.FDs, x.DBBytes, x.Commits, x.Allocated)
	return x, nil
}

func (s *soak) judge(sum *Summary) {
	fail := func(f string, args ...any) { sum.Failures = append(sum.Failures, fmt.Sprintf(f, args...)) }
	last := s.samples[len(s.samples)-1]
	sum.Duration, sum.Cycles, sum.Ops, sum.NewIdentities, sum.KnownCommits = last.T, s.cycles, s.ops, s.newIDs, s.known
	if last.T > 0 {
		sum.CyclesPerSec = float64(s.cycles) / last.T
	}
	// Units: every known identity holds one; new identities' reservations
	// are retired beyond ifmgr.DefaultMaxAbsent (the last one may be one
	// over until the next commit retires it).
	sum.UnitsEnd = last.Allocated
	sum.UnitsBound = s.k + min(s.newIDs, ifmgr.DefaultMaxAbsent+1)
	low := s.k + min(s.newIDs, ifmgr.DefaultMaxAbsent)
	if last.Allocated < low || last.Allocated > sum.UnitsBound {
		fail("units in use at the end: %d, want %d..%d (%d known identities, %d new, reservations kept: %d)", last.Allocated, low, sum.UnitsBound, s.k, s.newIDs, ifmgr.DefaultMaxAbsent)
	}
	if last.Held != 0 {
		fail("%d units held by foreign interfaces at the end, want 0", last.Held)
	}
	if last.Managed != s.k {
		fail("%d bridges present at the end, want %d (one per known port)", last.Managed, s.k)
	}
	if s.known != 0 {
		fail("%d DB commits for flaps, MAC changes and replugs of known identities, want 0", s.known)
	}
	// Warm-up: the first fifth of the run, and until the reservations
	// plateau (from then on each new identity retires an old one).
	plateau := s.k + ifmgr.DefaultMaxAbsent
	warm := -1
	for i, x := range s.samples {
		if x.T >= sum.Duration/5 && (x.Allocated >= plateau || s.newIDs < ifmgr.DefaultMaxAbsent) {
			warm = i
			break
		}
	}
	if warm < 0 || len(s.samples)-warm < 4 {
		fail("too few samples after warm-up (%d samples, warm-up ends at sample %d): run longer", len(s.samples), warm)
		return
	}
	after := s.samples[warm:]
	sum.WarmupEnd = after[0].T
	med := func(xs []sample) int64 {
		r := make([]int64, len(xs))
		for i, x := range xs {
			r[i] = x.RSS
		}
		slices.Sort(r)
		return r[len(r)/2]
	}
	sum.RSSAfterWarmup = med(after[:3])
	sum.RSSEnd = med(after[len(after)-3:])
	if growth := sum.RSSEnd - sum.RSSAfterWarmup; growth >= 1<<20 {
		fail("RSS grew %d bytes after warm-up (%d -> %d), want under 1 MiB", growth, sum.RSSAfterWarmup, sum.RSSEnd)
	}
	sum.Goroutines = [2]int{after[0].Goroutines, after[0].Goroutines}
	sum.FDs = [2]int{after[0].FDs, after[0].FDs}
	for _, x := range after {
		sum.Goroutines = [2]int{min(sum.Goroutines[0], x.Goroutines), max(sum.Goroutines[1], x.Goroutines)}
		sum.FDs = [2]int{min(sum.FDs[0], x.FDs), max(sum.FDs[1], x.FDs)}
	}
	if sum.Goroutines[0] != sum.Goroutines[1] {
		fail("goroutines varied after warm-up: %d..%d", sum.Goroutines[0], sum.Goroutines[1])
	}
	if sum.FDs[0] != sum.FDs[1] {
		fail("open fds varied after warm-up: %d..%d", sum.FDs[0], sum.FDs[1])
	}
	// The DB is bounded: once the reservations plateau it must stop
	// growing (bbolt reuses freed pages); before that, it must stay within
	// what the bounded record count explains.
	for _, x := range s.samples {
		sum.DBMaxBytes = max(sum.DBMaxBytes, x.DBBytes)
	}
	sum.DBEndBytes = last.DBBytes
	if s.samples[warm].Allocated >= plateau && last.DBBytes > 2*s.samples[warm].DBBytes {
		fail("DB grew from %d to %d bytes after the reservations plateaued", s.samples[warm].DBBytes, last.DBBytes)
	}
}

func (s *soak) write(sum *Summary) error {
	f, err := os.Create(sum.CSV)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	w.Write([]string{"t_s", "cycles", "new_identities", "rss_bytes", "heap_alloc_bytes", "goroutines", "fds", "threads", "db_bytes", "commits", "units_allocated", "units_held", "bridges"})
	var xs []float64
	var rss, gor, fds, db, units []float64
	for _, x := range s.samples {
		w.Write([]string{strconv.FormatFloat(x.T, 'f', 1, 64), strconv.Itoa(x.Cycles), strconv.Itoa(x.NewIDs), strconv.FormatInt(x.RSS, 10),
			strconv.FormatUint(x.HeapAlloc, 10), strconv.Itoa(x.Goroutines), strconv.Itoa(x.FDs), strconv.Itoa(x.Threads),
			strconv.FormatInt(x.DBBytes, 10), strconv.FormatUint(x.Commits, 10), strconv.Itoa(x.Allocated), strconv.Itoa(x.Held), strconv.Itoa(x.Managed)})
		xs = append(xs, x.T)
		rss = append(rss, float64(x.RSS)/1e6)
		gor = append(gor, float64(x.Goroutines))
		fds = append(fds, float64(x.FDs))
		db = append(db, float64(x.DBBytes)/1e3)
		units = append(units, float64(x.Allocated))
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return plotPNG(sum.PNG, xs, []series{
		{"ifmgrd RSS", "MB", rss}, {"goroutines", "count", gor}, {"open fds", "count", fds},
		{"DB file", "kB", db}, {"bridge units allocated", "count", units},
	})
}
