package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/internal/netnstest"
	"github.com/uroute/uroute/persist"
	bolt "go.etcd.io/bbolt"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

var groupSeq atomic.Uint32

// env is one daemon's world: its own owner group, DB and socket, and a
// cleanup that removes every link it or the test made in one batched
// kernel call (deleting thousands of links one by one costs minutes).
type env struct {
	t      *testing.T
	dir    string
	db     string
	socket string
	group  uint32
	config string                          // board profile, if any
	watch  int                             // watcher receive buffer, 0 = default
	logOut io.Writer                       // the daemon's log also goes here, if set
	retry  time.Duration                   // backoff of refused actions (min = max), 0 = default
	kernel func(ifmgr.Kernel) ifmgr.Kernel // wraps the daemon's kernel Conn, if set
	cancel context.CancelFunc
	done   chan error
}

func newEnv(t *testing.T) *env {
	t.Helper()
	netnstest.Require(t)
	dir := t.TempDir()
	e := &env{t: t, dir: dir, db: filepath.Join(dir, "data", "ifmgr.db"), socket: filepath.Join(dir, "ifmgr.sock"), group: 0x7000 + groupSeq.Add(1)}
	t.Cleanup(func() {
		e.stop()
		deleteGroups(t, e.group, e.foreignGroup())
	})
	return e
}

// deleteGroups deletes every link of the given groups (the test's own and
// its foreign ones), through netlink: the guests' ip is u-root's, which
// has no "link delete group", and the tests of one binary share a network
// namespace, so a link left behind (a profile bridge whose last port went
// just before the daemon stopped) would hold its name in the next test.
func deleteGroups(t *testing.T, groups ...uint32) {
	t.Helper()
	c, err := kernel.Dial()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	defer c.Close()
	links, err := c.Links()
	if err != nil {
		t.Errorf("cleanup: %v", err)
		return
	}
	for _, l := range links {
		if slices.Contains(groups, l.Group) {
			// A VLAN goes with its parent: ErrNotFound is fine.
			if err := c.Delete(l.Index); err != nil && !errors.Is(err, kernel.ErrNotFound) {
				t.Errorf("cleanup: delete %s: %v", l.Name, err)
			}
		}
	}
}

// foreignGroup tags links the test creates as "another process", so the
// cleanup finds them too; ifmgr treats any group but its own as foreign.
func (e *env) foreignGroup() uint32 { return e.group + 0x100 }

func (e *env) start() {
	e.t.Helper()
	ready := make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	e.cancel, e.done = cancel, make(chan error, 1)
	o := Options{DB: e.db, Socket: e.socket, OwnerGroup: e.group, BridgeTemplate: "bridge%d", BridgeMax: ifmgr.DefaultMaxUnit,
		VLANTemplate: "vlan%d", VLANMax: ifmgr.DefaultMaxUnit,
		// The kernel holds rtnl_lock while it tears down another test's
		// thousands of bridges (an rcu_barrier per bridge): wait it out.
		RequestTimeout: 10 * time.Minute, Config: e.config, WatchBuffer: e.watch,
		RetryMin: e.retry, RetryMax: e.retry,
		Logger: testLogger(e.logOut), Ready: func() { close(ready) }, wrapKernel: e.kernel}
	go func() { e.done <- Run(ctx, o) }()
	select {
	case <-ready:
	case err := <-e.done:
		e.cancel = nil // nothing left to stop: the cleanup must not wait for it
		e.t.Fatalf("daemon did not start: %v", err)
	}
}

// testLogger writes the daemon's log to also (if not nil), and to stderr
// if UROUTE_TEST_LOG=1.
func testLogger(also io.Writer) *slog.Logger {
	out := io.Discard
	if os.Getenv("UROUTE_TEST_LOG") == "1" {
		out = os.Stderr
	}
	if also != nil {
		out = io.MultiWriter(out, also)
	}
	return slog.New(slog.NewTextHandler(out, nil))
}

func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	if err := <-e.done; err != nil {
		e.t.Errorf("daemon: %v", err)
	}
}

func (e *env) client() *api.Client {
	e.t.Helper()
	c, err := api.Dial(e.socket)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return c
}

// kernelOwned lists what the kernel says ifmgr owns: the truth the DB must match.
func kernelOwned(t *testing.T, group uint32) map[string]kernel.Link {
	t.Helper()
	c, err := kernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	links, err := c.Links()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]kernel.Link{}
	for _, l := range links {
		if l.Group == group {
			out[l.Name] = l
		}
	}
	return out
}

// checkAgree asserts the daemon's records (through ifctl list) and the
// kernel's owned links are the same set, with no name twice.
func (e *env) checkAgree() []ifmgr.Info {
	e.t.Helper()
	list, err := e.client().List()
	if err != nil {
		e.t.Fatal(err)
	}
	owned := kernelOwned(e.t, e.group)
	seen := map[string]bool{}
	for _, in := range list {
		if seen[in.Name] {
			e.t.Errorf("%s listed twice", in.Name)
		}
		seen[in.Name] = true
		if in.State == "absent" && strings.HasPrefix(in.Identity, "rule=") {
			continue // a reservation for hardware that is gone, by design
		}
		if _, ok := owned[in.Name]; !ok {
			e.t.Errorf("%s recorded but not in the kernel (leaked unit)", in.Name)
		}
	}
	for name := range owned {
		if !seen[name] {
			e.t.Errorf("%s owned in the kernel but not recorded", name)
		}
	}
	return list
}

func TestConcurrentClients(t *testing.T) {
	e := newEnv(t)
	e.start()
	const clients, each = 64, 50
	names := make(chan string, clients*each)
	began := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client()
			for j := 0; j < each; j++ {
				in, err := c.Create("bridge", "", 0)
				if err != nil {
					t.Error(err)
					return
				}
				names <- in.Name
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	close(names)
	got := map[string]bool{}
	for n := range names {
		if got[n] {
			t.Errorf("name %s handed out twice", n)
		}
		got[n] = true
	}
	if len(got) != clients*each {
		t.Fatalf("%d distinct names, want %d", len(got), clients*each)
	}
	owned := kernelOwned(t, e.group)
	if len(owned) != len(got) {
		t.Errorf("kernel shows %d owned links, clients got %d names", len(owned), len(got))
	}
	for n := range got {
		if _, ok := owned[n]; !ok {
			t.Errorf("%s answered but not in the kernel", n)
		}
	}
	e.checkAgree()
	st, err := e.client().Status()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bridges from %d clients in %v, %d DB commits", len(got), clients, elapsed, st.Commits)
	if st.Commits >= uint64(len(got)) {
		t.Errorf("%d commits for %d creates: requests are not batched", st.Commits, len(got))
	}
}

func ip(t *testing.T, args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Another process renames its interfaces to the bridgeN names the allocator
// is about to hand out. Clients must see no error and no duplicate, and the
// skipped units must come back once the intruders go.
func TestForeignRenamesWhileAllocating(t *testing.T) {
	e := newEnv(t)
	e.start()
	var created atomic.Int64
	stop := make(chan struct{})
	var held []string
	var hwg sync.WaitGroup
	hwg.Add(1)
	go func() {
		defer hwg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			tmp := fmt.Sprintf("fgn%d", i)
			if err := ip(t, "link", "add", tmp, "group", fmt.Sprint(e.foreignGroup()), "type", "veth", "peer", "name", tmp+"p", "group", fmt.Sprint(e.foreignGroup())); err != nil {
				t.Error(err)
				return
			}
			for ahead := int64(1); ahead < 8; ahead++ {
				target := fmt.Sprintf("bridge%d", created.Load()+ahead)
				if ip(t, "link", "set", tmp, "name", target) == nil {
					held = append(held, target)
					break
				}
			}
		}
	}()
	const clients, each = 8, 40
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]bool{}
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client()
			for j := 0; j < each; j++ {
				in, err := c.Create("bridge", "", 0)
				if err != nil {
					t.Errorf("client saw an error: %v", err)
					return
				}
				created.Add(1)
				mu.Lock()
				if got[in.Name] {
					t.Errorf("duplicate %s", in.Name)
				}
				got[in.Name] = true
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(stop)
	hwg.Wait()
	if len(held) == 0 {
		t.Fatal("the intruder never won a name; the test proved nothing")
	}
	for _, h := range held {
		if got[h] {
			t.Errorf("%s handed out while a foreign interface had it", h)
		}
	}
	e.checkAgree()
	st, _ := e.client().Status()
	t.Logf("intruders took %d names; ifmgr holds %d units for foreign interfaces", len(held), st.Cloners[0].Held)

	highest := -1
	for n := range got {
		var u int
		fmt.Sscanf(n, "bridge%d", &u)
		highest = max(highest, u)
	}
	var below []string
	for _, h := range held {
		var u int
		fmt.Sscanf(h, "bridge%d", &u)
		if u < highest {
			below = append(below, h)
		}
		if err := ip(t, "link", "delete", h); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { st, _ := e.client().Status(); return st.Cloners[0].Held == 0 })
	c := e.client()
	var again []string
	for range below {
		in, err := c.Create("bridge", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		again = append(again, in.Name)
	}
	sort.Strings(below)
	sort.Strings(again)
	if fmt.Sprint(below) != fmt.Sprint(again) {
		t.Errorf("skipped units not handed out again: got %v, want %v", again, below)
	}
	e.checkAgree()
}

func waitFor(t *testing.T, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatal("condition not reached in 2 minutes")
}

func TestRestartKeepsEveryUnit(t *testing.T) {
	e := newEnv(t)
	e.start()
	c := e.client()
	for i := 0; i < 20; i++ {
		if _, err := c.Create("bridge", "", 0); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range []string{"bridge3", "bridge11"} {
		if err := c.Destroy(n); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Create("bridge500", "", 0); err != nil {
		t.Fatal(err)
	}
	before := e.checkAgree()
	c.Close()
	e.stop()
	e.start()
	after := e.checkAgree()
	if fmt.Sprint(names(before)) != fmt.Sprint(names(after)) {
		t.Errorf("restart changed the units:\nbefore %v\nafter  %v", names(before), names(after))
	}
	st, _ := e.client().Status()
	if st.Commits != 0 {
		t.Errorf("a clean restart made %d DB commits, want 0", st.Commits)
	}
}

func names(l []ifmgr.Info) []string {
	var out []string
	for _, in := range l {
		out = append(out, in.Name)
	}
	return out
}

// A DB file destroyed between two runs: the daemon moves it aside and
// rebuilds every record from the kernel's marked links, with the same
// names, units and identities, and the rebuilt records are in the new file.
func TestCorruptDBRebuiltFromKernel(t *testing.T) {
	e := newEnv(t)
	e.start()
	c := e.client()
	made := map[string]ifmgr.Info{}
	for i := 0; i < 5; i++ {
		in, err := c.Create("bridge", "", 0)
		if err != nil {
			t.Fatalf("create %d: %v", i, err)
		}
		made[in.Name] = in
	}
	in, err := c.Create("bridge42", "", 0) // an explicit name, another identity kind
	if err != nil {
		t.Fatalf("create bridge42: %v", err)
	}
	made[in.Name] = in
	before := e.checkAgree()
	if len(before) != len(made) {
		t.Fatalf("%d interfaces listed after %d creates: %v", len(before), len(made), names(before))
	}
	for _, in := range before {
		if m, ok := made[in.Name]; !ok || m.Unit != in.Unit || m.Identity != in.Identity || in.Identity == "" {
			t.Errorf("listed %+v, created %+v", in, m)
		}
	}
	c.Close()
	e.stop()
	if err := os.WriteFile(e.db, []byte(strings.Repeat("not a bolt file ", 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	e.start()
	after := e.checkAgree()
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("rebuilt from kernel:\n%v\nwant\n%v", after, before)
	}
	e.stop()
	kept, _ := filepath.Glob(e.db + ".corrupt*")
	if len(kept) != 1 {
		t.Errorf("bad DB not kept for diagnosis: %v", kept)
	}
	// The rebuilt records are on disk, not only in the daemon's memory.
	st, rec, err := persist.Open(e.db, persist.Options{Logger: testLogger(nil)})
	if err != nil || rec.Reason != nil {
		t.Fatalf("reopen the rebuilt DB: %v %+v", err, rec)
	}
	defer st.Close()
	recs, err := st.Records()
	if err != nil {
		t.Fatal(err)
	}
	onDisk := map[string]persist.Record{}
	for _, r := range recs {
		onDisk[fmt.Sprintf("%s%d", r.Cloner, r.Unit)] = r
	}
	for _, in := range before {
		r, ok := onDisk[in.Name]
		if !ok || r.Identity.Key() != in.Identity {
			t.Errorf("%s (%s): on disk %+v, %v", in.Name, in.Identity, r, ok)
		}
	}
	if len(onDisk) != len(before) {
		t.Errorf("%d records on disk, want %d: %+v", len(onDisk), len(before), recs)
	}
}

func TestPeerCredentialsRefused(t *testing.T) {
	e := newEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ln, err := api.Listen(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := os.Stat(e.socket)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v, want 0600", fi.Mode().Perm())
	}
	srv := &api.Server{Backend: nil, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AllowUID: func(uid uint32) bool { return uid == 4242 }}
	done := make(chan error)
	go func() { done <- srv.Serve(ctx, ln) }()
	_, err = e.client().Status()
	if !errors.Is(err, api.ErrPermission) || !strings.Contains(err.Error(), "uid 0") {
		t.Errorf("refused peer got %v", err)
	}
	cancel()
	<-done
}

// --- the command-line contract, through the real binaries ---

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries is a directory with ifmgrd and ifctl: $UROUTE_TEST_BINDIR (the
// QEMU guests have no Go toolchain; their image carries both, built from
// the same tree), else a fresh "go build".
func binaries(t *testing.T) string {
	t.Helper()
	if dir := os.Getenv("UROUTE_TEST_BINDIR"); dir != "" {
		return dir
	}
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "uroute-bin")
		if buildErr != nil {
			return
		}
		os.Chmod(binDir, 0o755)
		out, err := exec.Command("go", "build", "-o", binDir, "github.com/uroute/uroute/firmware/cmd/ifmgrd", "github.com/uroute/uroute/firmware/cmd/ifctl").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v: %s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binDir
}

type daemonProc struct {
	cmd  *exec.Cmd
	logs *strings.Builder
}

func (e *env) startProc(t *testing.T) *daemonProc {
	t.Helper()
	d := &daemonProc{logs: &strings.Builder{}}
	d.cmd = exec.Command(filepath.Join(binaries(t), "ifmgrd"), "--db", e.db, "--socket", e.socket, "--owner-group", fmt.Sprint(e.group), "--request-timeout", "10m")
	d.cmd.Stderr = &syncWriter{w: d.logs}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		c, err := api.Dial(e.socket)
		if err != nil {
			return false
		}
		defer c.Close()
		_, err = c.Status()
		return err == nil
	})
	return d
}

type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

func ifctl(t *testing.T, socket string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(filepath.Join(binaries(t), "ifctl"), append([]string{"--socket", socket}, args...)...)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return o.String(), e.String(), code
}

func TestCLIContract(t *testing.T) {
	e := newEnv(t)
	d := e.startProc(t)
	defer func() { d.cmd.Process.Signal(syscall.SIGTERM); d.cmd.Wait() }()

	out, errOut, code := ifctl(t, e.socket, "create", "bridge")
	if out != "bridge0\n" || code != 0 || errOut != "" {
		t.Errorf("create bridge: %q %q %d", out, errOut, code)
	}
	out, _, code = ifctl(t, e.socket, "create", "bridge7")
	if out != "bridge7\n" || code != 0 {
		t.Errorf("create bridge7: %q %d", out, code)
	}
	_, errOut, code = ifctl(t, e.socket, "create", "bridge123456")
	if code != 1 || !strings.HasPrefix(errOut, "ifctl: create bridge123456: ") || !strings.Contains(errOut, "out of range") || !strings.Contains(errOut, "no space") {
		t.Errorf("out-of-range unit: %q %d", errOut, code)
	}
	_, errOut, code = ifctl(t, e.socket, "create", "bridge7")
	if code != 1 || !strings.Contains(errOut, "already allocated") {
		t.Errorf("existing unit: %q %d", errOut, code)
	}
	_, errOut, code = ifctl(t, e.socket, "create", "vlan", "--dev", "lo", "--vid", "5000")
	if code != 1 || !strings.Contains(errOut, "1-4094") {
		t.Errorf("bad vid: %q %d", errOut, code)
	}
	_, errOut, code = ifctl(t, e.socket, "destroy", "lo")
	if code != 1 || !strings.Contains(errOut, "not managed") {
		t.Errorf("destroy lo: %q %d", errOut, code)
	}
	for _, args := range [][]string{{}, {"frob"}, {"create"}, {"list", "extra"}, {"create", "bridge", "--nope"}} {
		if _, _, code := ifctl(t, e.socket, args...); code != 2 {
			t.Errorf("ifctl %v: exit %d, want 2 (usage)", args, code)
		}
	}
	out, _, code = ifctl(t, e.socket, "list")
	if code != 0 || !strings.Contains(out, "bridge0") || !strings.Contains(out, "bridge7") || !strings.Contains(out, "name=bridge7") {
		t.Errorf("list: %q %d", out, code)
	}
	out, _, _ = ifctl(t, e.socket, "list", "-j")
	var list []ifmgr.Info
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 2 || list[1].Unit != 7 || (list[1].State != "up" && list[1].State != "no-carrier") {
		t.Errorf("list -j: %v %q", err, out)
	}
	if _, _, code := ifctl(t, e.socket, "destroy", "bridge0"); code != 0 {
		t.Error("destroy bridge0 failed")
	}
	if _, ok := kernelOwned(t, e.group)["bridge0"]; ok {
		t.Error("bridge0 still in the kernel")
	}
	_, errOut, code = ifctl(t, filepath.Join(e.dir, "nosock"), "list")
	if code != 1 || !strings.HasPrefix(errOut, "ifctl: ") {
		t.Errorf("no daemon: %q %d", errOut, code)
	}
}

// kill -9 in the middle of a stream of creates: after restart every record
// has its link and every owned link its record, and units confirmed to
// clients before the kill are all still there.
func TestKill9MidBatch(t *testing.T) {
	e := newEnv(t)
	for round := 0; round < 3; round++ {
		d := e.startProc(t)
		var mu sync.Mutex
		var confirmed []string
		var wg sync.WaitGroup
		for i := 0; i < 16; i++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				c, err := api.Dial(e.socket)
				if err != nil {
					return
				}
				defer c.Close()
				for {
					in, err := c.Create("bridge", "", 0)
					if err != nil {
						return // the daemon died under us: expected
					}
					mu.Lock()
					confirmed = append(confirmed, in.Name)
					mu.Unlock()
				}
			}()
		}
		// Kill at a different point of the stream each round, after a
		// bounded number of creates (every bridge costs the kernel an
		// rcu_barrier to delete later).
		waitFor(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(confirmed) >= 60+round*45 })
		d.cmd.Process.Kill()
		d.cmd.Wait()
		wg.Wait()

		d = e.startProc(t)
		list := e.checkAgree()
		have := map[string]bool{}
		for _, in := range list {
			have[in.Name] = true
		}
		for _, n := range confirmed {
			if !have[n] {
				t.Errorf("round %d: %s was confirmed before the kill and is gone", round, n)
			}
		}
		t.Logf("round %d: %d confirmed before kill -9, %d managed after restart", round, len(confirmed), len(list))
		d.cmd.Process.Signal(syscall.SIGTERM)
		if err := d.cmd.Wait(); err != nil {
			t.Errorf("SIGTERM exit: %v\n%s", err, d.logs)
		}
	}
}

// A DB written by newer firmware is left byte-for-byte alone after a
// downgrade, and ifmgrd still manages interfaces, without persistence.
func TestDBFromNewerFirmware(t *testing.T) {
	e := newEnv(t)
	os.MkdirAll(filepath.Dir(e.db), 0o700)
	db, err := bolt.Open(e.db, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucket([]byte("meta"))
		if err != nil {
			return err
		}
		if _, err := tx.CreateBucket([]byte("units")); err != nil {
			return err
		}
		return meta.Put([]byte("schema"), []byte{0, 0, 0, 99})
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(e.db)
	e.start()
	if _, err := e.client().Create("bridge", "", 0); err != nil {
		t.Fatalf("ifmgrd must still work: %v", err)
	}
	if st := e.status(); st.DB != ":memory:" {
		t.Errorf("running on %q, want the memory store", st.DB)
	}
	e.stop()
	after, _ := os.ReadFile(e.db)
	if string(before) != string(after) {
		t.Error("the newer firmware's DB was modified")
	}
}

// typeOf converts v to the type of Statfs_t.Type, which is int64 on 64-bit
// Linux and int32 on 32-bit MIPS and ARM.
func typeOf[T int32 | int64](_ T, v int64) T { return T(v) }

// syncBuffer is a bytes.Buffer for a logger that other goroutines write.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
