package daemon

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/kernel"
)

// faultKernel wraps the daemon's real rtnetlink Conn and makes chosen
// calls fail as the kernel would refuse them (the same error shape as
// kernel.Conn's: a *netlink.OpError with the errno, EEXIST mapped to
// kernel.ErrExists), without sending them. Everything else, and every call
// once the fault is lifted, reaches the real kernel.
type faultKernel struct {
	ifmgr.Kernel
	mu       sync.Mutex
	create   syscall.Errno // refuse CreateBridgeWith with this, 0 = none
	creates  int           // how many more creates to refuse; <0 = all
	master   syscall.Errno // refuse SetMaster (joins; releases pass) with this
	injected map[string]int
}

func (k *faultKernel) failCreates(errno syscall.Errno, n int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.create, k.creates = errno, n
}

func (k *faultKernel) failJoins(errno syscall.Errno) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.master = errno
}

func (k *faultKernel) count(what string) int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.injected[what]
}

func refusal(errno syscall.Errno, format string, args ...any) error {
	what := fmt.Sprintf(format, args...)
	oe := &netlink.OpError{Op: "receive", Err: errno}
	if errno == syscall.EEXIST {
		return fmt.Errorf("%s: %w: %w", what, kernel.ErrExists, oe)
	}
	return fmt.Errorf("%s: %w", what, oe)
}

func (k *faultKernel) CreateBridgeWith(name string, group uint32, opt kernel.BridgeOptions) (kernel.Link, error) {
	if err := k.createFault(name); err != nil {
		return kernel.Link{}, err
	}
	return k.Kernel.CreateBridgeWith(name, group, opt)
}

// createFault is the refusal of a bridge create, if one is due.
func (k *faultKernel) createFault(name string) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	errno := k.create
	if errno != 0 && k.creates != 0 {
		k.creates--
		k.injected["create "+errno.Error()]++
		return refusal(errno, "create bridge %q", name)
	}
	return nil
}

func (k *faultKernel) SetMaster(index, master uint32) error {
	if err := k.joinFault(index, master); err != nil {
		return err
	}
	return k.Kernel.SetMaster(index, master)
}

// joinFault is the refusal of a join (not of a release), if one is due.
func (k *faultKernel) joinFault(index, master uint32) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	errno := k.master
	if errno != 0 && master != 0 {
		k.injected["join "+errno.Error()]++
		return refusal(errno, "set master of link %d to %d", index, master)
	}
	return nil
}

// Batch refuses the ops a fault is set for, without sending them, and
// sends the others to the real kernel as one pipelined batch.
func (k *faultKernel) Batch(ops []kernel.Op) []kernel.Result {
	res := make([]kernel.Result, len(ops))
	var pass []kernel.Op
	var at []int
	for i, o := range ops {
		var err error
		switch {
		case o.Kind == kernel.OpCreateBridge:
			err = k.createFault(o.Name)
		case o.Kind == kernel.OpSetLink && o.Set&kernel.SetMaster != 0:
			err = k.joinFault(o.Index, o.Master)
		}
		if err != nil {
			res[i].Err = err
			continue
		}
		pass = append(pass, o)
		at = append(at, i)
	}
	if len(pass) > 0 {
		for j, r := range k.Kernel.Batch(pass) {
			res[at[j]] = r
		}
	}
	return res
}

func (e *env) injectFaults() *faultKernel {
	k := &faultKernel{injected: map[string]int{}}
	e.kernel = func(real ifmgr.Kernel) ifmgr.Kernel { k.Kernel = real; return k }
	return k
}

// checkDBMatchesKernel checks the chain kernel = daemon = DB: the daemon's
// list and the kernel's owned links agree (checkAgree), then, the daemon
// stopped, its DB file holds exactly the records the list showed: nothing
// committed that the daemon did not make, nothing it confirmed lost.
func (e *env) checkDBMatchesKernel() {
	e.t.Helper()
	want := map[string]bool{}
	for _, in := range e.checkAgree() {
		want[in.Identity] = true
	}
	e.stop()
	got := map[string]bool{}
	for _, key := range dbRecords(e.t, e.db) {
		got[key] = true
	}
	if a, b := keys(got), keys(want); !slices.Equal(a, b) {
		e.t.Errorf("DB records %v, the daemon (agreeing with the kernel) had %v", a, b)
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// TestKernelRefusesCreates: RTM_NEWLINK of ifctl creates fails with EBUSY
// or ENOMEM, the real kernel behind. The client is told the kernel's
// reason; the daemon keeps serving; nothing is recorded for the refused
// creates (no unit committed, none held), and the first create after the
// fault goes gets the lowest free unit. DB and kernel agree after, and
// across a restart.
func TestKernelRefusesCreates(t *testing.T) {
	for _, errno := range []syscall.Errno{syscall.EBUSY, syscall.ENOMEM} {
		t.Run(strings.ReplaceAll(errno.Error(), " ", "_"), func(t *testing.T) {
			e := newEnv(t)
			k := e.injectFaults()
			e.start()
			c := e.client()
			var confirmed []string
			for range 3 {
				in, err := c.Create("bridge", "", 0)
				if err != nil {
					t.Fatal(err)
				}
				confirmed = append(confirmed, in.Name)
			}
			k.failCreates(errno, -1)
			for _, name := range []string{"bridge", "bridge", "bridge9"} {
				_, err := c.Create(name, "", 0)
				if !errors.Is(err, ifmgr.ErrKernel) || !strings.Contains(err.Error(), errno.Error()) {
					t.Fatalf("create %s under %v: got %v, want ErrKernel naming %q", name, errno, err, errno.Error())
				}
			}
			list, err := c.List() // still serving
			if err != nil {
				t.Fatal(err)
			}
			if got := names(list); !slices.Equal(got, confirmed) {
				t.Errorf("after refused creates the daemon lists %v, want %v", got, confirmed)
			}
			st := e.status()
			if st.Cloners[0].Allocated != 3 || st.Cloners[0].Held != 0 {
				t.Errorf("refused creates left units behind: %+v", st.Cloners[0])
			}
			k.failCreates(0, 0)
			in, err := c.Create("bridge", "", 0)
			if err != nil || in.Name != "bridge3" {
				t.Fatalf("first create after the fault: %+v, %v; want bridge3", in, err)
			}
			t.Logf("%d creates refused with %v; then %s", k.count("create "+errno.Error()), errno, in.Name)
			e.checkAgree()
			e.checkDBMatchesKernel()
			e.kernel = nil
			e.start()
			if got := names(e.checkAgree()); !slices.Equal(got, append(confirmed, "bridge3")) {
				t.Errorf("after restart: %v", got)
			}
		})
	}
}

// TestKernelAnswersEEXISTFalsely: RTM_NEWLINK answers EEXIST although the
// name is free (a kernel or a race that the daemon cannot see). The daemon
// must not hand out the name twice nor lose the client: a wildcard create
// moves on to the next unit; the skipped units are held only while in
// doubt and come back once the kernel is re-read and shows the names free.
func TestKernelAnswersEEXISTFalsely(t *testing.T) {
	e := newEnv(t)
	k := e.injectFaults()
	e.start()
	c := e.client()
	if _, err := c.Create("bridge", "", 0); err != nil {
		t.Fatal(err)
	}
	k.failCreates(syscall.EEXIST, 3)
	in, err := c.Create("bridge", "", 0)
	if err != nil {
		t.Fatalf("create while the kernel answers EEXIST: %v", err)
	}
	t.Logf("after 3 false EEXISTs the client got %s; status %+v", in.Name, e.status().Cloners[0])
	if in.Name != "bridge4" {
		t.Errorf("got %s, want bridge4 (bridge1-3 skipped)", in.Name)
	}
	// A specific name refused with EEXIST is the client's answer.
	k.failCreates(syscall.EEXIST, 1)
	if _, err := c.Create("bridge7", "", 0); !errors.Is(err, ifmgr.ErrNameTaken) {
		t.Errorf("create bridge7 answered EEXIST: got %v, want ErrNameTaken", err)
	}
	// A kernel that answers EEXIST for every name: the create fails with
	// the kernel's answer after a few units, instead of walking all 32768
	// (one DB commit each: 6m45s with the owner busy, before the fix).
	k.failCreates(syscall.EEXIST, -1)
	commits := e.status().Commits
	_, err = c.Create("bridge", "", 0)
	if !errors.Is(err, ifmgr.ErrKernel) || !strings.Contains(err.Error(), "file exists") {
		t.Errorf("create under a permanent false EEXIST: got %v, want ErrKernel naming EEXIST", err)
	}
	st := e.status()
	t.Logf("permanent EEXIST: %d units tried, %d commits; answer: %v", k.count("create file exists")-4, st.Commits-commits, err)
	if tried := k.count("create file exists") - 4; tried > 10 {
		t.Errorf("one create tried %d units under a permanent EEXIST", tried)
	}
	k.failCreates(0, 0)
	// The fault is gone: the doubtful units come back (here at the next
	// re-read of the kernel; the periodic one is 5 minutes away).
	if err := c.Resync(); err != nil {
		t.Fatal(err)
	}
	if st := e.status(); st.Cloners[0].Held != 0 {
		t.Errorf("units held for names nobody has after a resync: %+v", st.Cloners[0])
	}
	var again []string
	for range 3 {
		in, err := c.Create("bridge", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		again = append(again, in.Name)
	}
	if !slices.Equal(again, []string{"bridge1", "bridge2", "bridge3"}) {
		t.Errorf("skipped units handed out again as %v, want bridge1-3", again)
	}
	e.checkAgree()
	e.checkDBMatchesKernel()
}

// TestKernelRefusesProfile: the profile's bridge cannot be created
// (ENOMEM), then ports cannot join it (set-master EBUSY). The daemon keeps
// serving, lists each refused action with the kernel's reason in status,
// retries with backoff, and converges once the fault goes: the bridge with
// its reserved unit, every port in it. DB and kernel agree after.
func TestKernelRefusesProfile(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(`
board = "kfaults"
[[port]]
name = "lan"
match.name = "kf*"
bridge = "lan"
[[bridge]]
name = "lan"
keep_empty = true
`)
	e.retry = 200 * time.Millisecond
	k := e.injectFaults()
	k.failCreates(syscall.ENOMEM, -1)
	fg := fmt.Sprint(e.foreignGroup())
	port := func(i int) {
		t.Helper()
		if err := ip(t, "link", "add", fmt.Sprintf("kf%d", i), "group", fg, "type", "veth", "peer", "name", fmt.Sprintf("kfp%d", i), "group", fg); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		port(i)
	}
	e.start()
	refusedWith := func(what string) bool {
		for _, r := range e.status().Refused {
			if strings.Contains(r.Error, what) {
				return true
			}
		}
		return false
	}
	waitFor(t, func() bool { return refusedWith("cannot allocate memory") })
	st := e.status()
	t.Logf("bridge refused: %+v", st.Refused)
	if n := len(kernelOwned(t, e.group)); n != 0 {
		t.Errorf("%d owned links while every create is refused", n)
	}
	before := k.count("create " + syscall.ENOMEM.Error())
	time.Sleep(time.Second)
	if tries := k.count("create "+syscall.ENOMEM.Error()) - before; tries > 10 {
		t.Errorf("%d create attempts in 1 s with a 200 ms backoff: a spin", tries)
	}

	k.failCreates(0, 0)
	lan := ""
	waitFor(t, func() bool {
		for _, in := range e.checkAgree() {
			if in.Identity == "rule=bridge/lan" && in.State != "absent" {
				lan = in.Name
			}
		}
		return lan != "" && linkMaster(t, "kf0") == lan && linkMaster(t, "kf2") == lan
	})

	k.failJoins(syscall.EBUSY)
	port(3)
	port(4)
	waitFor(t, func() bool { return refusedWith("device or resource busy") })
	t.Logf("joins refused: %+v", e.status().Refused)
	if m := linkMaster(t, "kf0"); m != lan {
		t.Errorf("kf0 in %q during the join fault, want %s", m, lan)
	}
	k.failJoins(0)
	waitFor(t, func() bool { return linkMaster(t, "kf3") == lan && linkMaster(t, "kf4") == lan })
	waitFor(t, func() bool { return len(e.status().Refused) == 0 })
	t.Logf("injected %v; converged with %s", k.injected, lan)
	e.checkAgree()
	e.checkDBMatchesKernel()
}
