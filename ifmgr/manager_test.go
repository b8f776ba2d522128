package ifmgr

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
	"go.uber.org/goleak"
)

type harness struct {
	t      *testing.T
	k      *fakeKernel
	s      *fakeStore
	m      *Manager
	cancel context.CancelFunc
	errc   chan error
}

func testCloners(t testing.TB, bridgeMax uint32) []*Cloner {
	t.Helper()
	b, err := NewCloner("bridge", "bridge", "bridge%d", bridgeMax)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewCloner("vlan", "vlan", "vlan%d", DefaultMaxUnit)
	if err != nil {
		t.Fatal(err)
	}
	return []*Cloner{b, v}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// start runs a manager over k and s until the test ends.
func start(t *testing.T, k *fakeKernel, s *fakeStore, bridgeMax uint32) *harness {
	t.Helper()
	return startConfig(t, k, s, Config{Cloners: testCloners(t, bridgeMax)})
}

// startConfig runs a manager built from cfg, with the fake kernel, store and
// watcher filled in.
func startConfig(t *testing.T, k *fakeKernel, s *fakeStore, cfg Config) *harness {
	t.Helper()
	cfg.Kernel, cfg.Store, cfg.Watcher, cfg.ResyncTick = k, s, k.watch(), -1
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, k: k, s: s, m: m}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.errc = make(chan error, 1)
	go func() { h.errc <- m.Run(ctx) }()
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	h.cancel = nil
	if err := <-h.errc; err != nil {
		h.t.Errorf("Run: %v", err)
	}
}

func (h *harness) create(name string) (Info, error) {
	return h.m.Create(context.Background(), CreateRequest{Name: name})
}

func (h *harness) mustCreate(name, want string) {
	h.t.Helper()
	in, err := h.create(name)
	if err != nil {
		h.t.Fatalf("create %s: %v", name, err)
	}
	if in.Name != want {
		h.t.Fatalf("create %s = %s, want %s", name, in.Name, want)
	}
}

// settle waits until the owner has processed everything the fake kernel has
// emitted so far: a request behind the events is answered after them.
func (h *harness) settle() {
	h.t.Helper()
	for i := 0; i < 1000 && len(h.k.events) > 0; i++ {
		time.Sleep(time.Millisecond)
	}
	if err := h.m.Resync(context.Background()); err != nil {
		h.t.Fatal(err)
	}
}

// Without a resync, the events alone must release a held unit.
func TestEventsAloneReleaseHeldUnit(t *testing.T) {
	h := start(t, newFakeKernel(), newFakeStore(), DefaultMaxUnit)
	f, _ := h.k.add(kernel.Link{Name: "bridge0", Kind: "veth"})
	waitStatus(t, h.m, func(st Status) bool { return st.Cloners[0].Held == 1 })
	h.k.rename(f.Index, "elsewhere")
	waitStatus(t, h.m, func(st Status) bool { return st.Cloners[0].Held == 0 })
	h.mustCreate("bridge", "bridge0")
	if st, _ := h.m.Status(context.Background()); st.Resyncs["requested"] != 0 || st.Resyncs["lost-events"] != 0 {
		t.Errorf("converged by resync, not by events: %v", st.Resyncs)
	}
}

func waitStatus(t *testing.T, m *Manager, ok func(Status) bool) {
	t.Helper()
	for i := 0; i < 2000; i++ {
		st, err := m.Status(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if ok(st) {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition not reached in 2s")
}

// checkConsistent asserts the invariants the thread's bugs violate: every
// record is an owned kernel link with that name and vice versa, and the
// allocator agrees with the records.
func (h *harness) checkConsistent() {
	h.t.Helper()
	h.settle()
	recs, _ := h.s.Records()
	names := h.k.names()
	owned := map[string]bool{}
	for name, l := range names {
		if l.Group == DefaultOwnerGroup {
			owned[name] = true
		}
	}
	seen := map[string]bool{}
	for _, r := range recs {
		name := fmt.Sprintf("%s%d", r.Cloner, r.Unit)
		if seen[name] {
			h.t.Errorf("two records for %s", name)
		}
		seen[name] = true
		if !owned[name] {
			h.t.Errorf("record %s has no owned kernel link (leaked unit)", name)
		}
	}
	for name := range owned {
		if !seen[name] {
			h.t.Errorf("owned link %s has no record", name)
		}
	}
	list, _ := h.m.List(context.Background())
	if len(list) != len(recs) {
		h.t.Errorf("manager lists %d interfaces, store has %d records", len(list), len(recs))
	}
}

func TestWildcardAndSpecificErrors(t *testing.T) {
	h := start(t, newFakeKernel(), newFakeStore(), 10)
	h.mustCreate("bridge", "bridge0")
	h.mustCreate("bridge", "bridge1")
	h.mustCreate("bridge7", "bridge7")
	h.mustCreate("bridge", "bridge2")

	foreign, _ := h.k.add(kernel.Link{Name: "bridge3", Kind: "veth"})
	h.settle()

	cases := []struct {
		name string
		want error
	}{
		{"bridge11", ErrUnitRange},
		{"bridge123456", ErrUnitRange},
		{"bridge99999999999999999999", ErrUnitRange},
		{"bridge7", ErrUnitExists},
		{"bridge3", ErrNameTaken},
		{"bridge07", ErrUnknownKind},
		{"frobnicator", ErrUnknownKind},
		{"way-too-long-name-x", ErrNameTooLong},
		{"bad/name", ErrBadName},
	}
	for _, c := range cases {
		_, err := h.create(c.name)
		if !errors.Is(err, c.want) {
			t.Errorf("create %s: got %v, want %v", c.name, err, c.want)
		}
		for _, other := range []error{ErrUnitRange, ErrUnitExists, ErrNameTaken} {
			if other != c.want && errors.Is(err, other) {
				t.Errorf("create %s: error %v also matches %v", c.name, err, other)
			}
		}
	}

	h.mustCreate("bridge", "bridge4") // 3 is skipped, not handed out
	if err := h.k.Delete(foreign.Index); err != nil {
		t.Fatal(err)
	}
	h.settle()
	h.mustCreate("bridge", "bridge3") // ... and not leaked either
	h.checkConsistent()
}

func TestRangeCheckedBeforeExistsAndHeld(t *testing.T) {
	h := start(t, newFakeKernel(), newFakeStore(), 2)
	h.k.add(kernel.Link{Name: "bridge5", Kind: "veth"}) // foreign, outside the range
	h.settle()
	for _, n := range []string{"bridge3", "bridge5"} {
		if _, err := h.create(n); !errors.Is(err, ErrUnitRange) {
			t.Errorf("%s: %v, want ErrUnitRange", n, err)
		}
	}
	h.mustCreate("bridge", "bridge0")
	h.mustCreate("bridge", "bridge1")
	h.mustCreate("bridge", "bridge2")
	if _, err := h.create("bridge"); !errors.Is(err, ErrUnitRange) {
		t.Errorf("full cloner: %v, want ErrUnitRange (no space)", err)
	}
}

// A foreign process takes the very name ifmgr is about to create, between
// allocation and the kernel call: the client still gets an interface, the
// skipped unit is held, and it is handed out again once the intruder goes.
func TestForeignTakesNameDuringCreate(t *testing.T) {
	k := newFakeKernel()
	var intruders []kernel.Link
	k.beforeCreate = func(name string) {
		if name == "bridge1" || name == "bridge2" {
			l, err := k.add(kernel.Link{Name: name, Kind: "veth"})
			if err == nil {
				intruders = append(intruders, l)
			}
		}
	}
	s := newFakeStore()
	h := start(t, k, s, DefaultMaxUnit)
	h.mustCreate("bridge", "bridge0")
	h.mustCreate("bridge", "bridge3")
	k.beforeCreate = nil
	if _, err := h.create("bridge1"); !errors.Is(err, ErrNameTaken) {
		t.Fatalf("specific bridge1 held by a foreign link: %v", err)
	}
	h.checkConsistent()
	for _, l := range intruders {
		k.Delete(l.Index)
	}
	h.settle()
	h.mustCreate("bridge", "bridge1")
	h.mustCreate("bridge", "bridge2")
	h.mustCreate("bridge", "bridge4")
	h.checkConsistent()
}

// The thread's worst case: a whole row of names collides with the numbers the
// allocator hands out. None of them may be leaked.
func TestRowOfCollisionsLeaksNothing(t *testing.T) {
	k := newFakeKernel()
	var row []kernel.Link
	for i := 0; i < 50; i++ {
		l, _ := k.add(kernel.Link{Name: fmt.Sprintf("bridge%d", i), Kind: "veth"})
		row = append(row, l)
	}
	h := start(t, k, newFakeStore(), DefaultMaxUnit)
	h.mustCreate("bridge", "bridge50")
	for _, l := range row {
		k.rename(l.Index, "x"+l.Name)
	}
	h.settle()
	for i := 0; i < 50; i++ {
		h.mustCreate("bridge", fmt.Sprintf("bridge%d", i))
	}
	h.mustCreate("bridge", "bridge51")
	h.checkConsistent()
}

func TestDestroyRefusesForeign(t *testing.T) {
	h := start(t, newFakeKernel(), newFakeStore(), DefaultMaxUnit)
	f, _ := h.k.add(kernel.Link{Name: "bridge0", Kind: "bridge"}) // same kind, no marker
	h.k.add(kernel.Link{Name: "eth0"})
	h.settle()
	for _, n := range []string{"bridge0", "eth0"} {
		if err := h.m.Destroy(context.Background(), n); !errors.Is(err, ErrNotOwned) {
			t.Errorf("destroy %s: %v, want ErrNotOwned", n, err)
		}
	}
	if err := h.m.Destroy(context.Background(), "nothere"); !errors.Is(err, ErrNoSuchLink) {
		t.Errorf("destroy nothere: %v", err)
	}
	if _, err := h.k.LinkByIndex(f.Index); err != nil {
		t.Fatal("foreign link was deleted")
	}
	h.mustCreate("bridge", "bridge1")
	if err := h.m.Destroy(context.Background(), "bridge1"); err != nil {
		t.Fatal(err)
	}
	h.mustCreate("bridge", "bridge1") // freed unit comes back
	h.checkConsistent()
}

func TestVLAN(t *testing.T) {
	h := start(t, newFakeKernel(), newFakeStore(), DefaultMaxUnit)
	eth, _ := h.k.add(kernel.Link{Name: "eth0"})
	h.settle()
	ctx := context.Background()
	in, err := h.m.Create(ctx, CreateRequest{Name: "vlan", Dev: "eth0", VID: 10})
	if err != nil || in.Name != "vlan0" || in.VID != 10 || in.Parent != "eth0" {
		t.Fatalf("create vlan: %+v %v", in, err)
	}
	for _, c := range []struct {
		req  CreateRequest
		want error
	}{
		{CreateRequest{Name: "vlan", Dev: "eth0", VID: 10}, ErrVLANExists},
		{CreateRequest{Name: "vlan", Dev: "eth0", VID: 0}, ErrBadVID},
		{CreateRequest{Name: "vlan", Dev: "eth0", VID: 4095}, ErrBadVID},
		{CreateRequest{Name: "vlan", Dev: "eth9", VID: 5}, ErrNoSuchLink},
		{CreateRequest{Name: "vlan", VID: 5}, ErrBadRequest},
		{CreateRequest{Name: "bridge", Dev: "eth0"}, ErrBadRequest},
		{CreateRequest{Name: "vlan40000", Dev: "eth0", VID: 5}, ErrUnitRange},
	} {
		if _, err := h.m.Create(ctx, c.req); !errors.Is(err, c.want) {
			t.Errorf("%+v: %v, want %v", c.req, err, c.want)
		}
	}
	h.m.Create(ctx, CreateRequest{Name: "vlan", Dev: "eth0", VID: 20})
	// The kernel removes VLANs with their parent; ifmgr follows, no errors.
	h.k.Delete(eth.Index)
	h.settle()
	if list, _ := h.m.List(ctx); len(list) != 0 {
		t.Errorf("VLANs of a removed parent still managed: %+v", list)
	}
	h.checkConsistent()
}

// A bridge is created down and set up behind its alias, the two in one
// datagram (WithNext), so that the alias, written on a down link, notifies
// no protocol (kernel.CreateBridgeOp); a VLAN the same way.
func TestCreatedLinksAliasedWhileDown(t *testing.T) {
	k := newFakeKernel()
	var order []kernel.Op
	k.onBatch = func(ops []kernel.Op) { order = append(order, ops...) }
	h := start(t, k, newFakeStore(), DefaultMaxUnit)
	h.k.add(kernel.Link{Name: "eth0", Flags: iffUp})
	h.settle()
	for range 3 {
		h.mustCreate("bridge", h.k.nextBridgeName())
	}
	if _, err := h.m.Create(context.Background(), CreateRequest{Name: "vlan", Dev: "eth0", VID: 10}); err != nil {
		t.Fatal(err)
	}
	h.k.mu.Lock()
	setups, onUp := h.k.setups, h.k.aliasesOnUp
	up := 0
	for _, l := range h.k.links {
		if l.Group == DefaultOwnerGroup && l.Flags&iffUp != 0 && strings.HasPrefix(l.Alias, aliasPrefix) {
			up++
		}
	}
	h.k.mu.Unlock()
	if up != 4 || setups != 4 || onUp != 0 {
		t.Fatalf("3 bridges and a VLAN: %d up with their alias, %d SetUp calls, %d aliases written on an up link; want 4, 4, 0", up, setups, onUp)
	}
	creates := 0
	for i, o := range order {
		switch {
		case o.Kind == kernel.OpCreateBridge || o.Kind == kernel.OpCreateVLAN:
			creates++
			if o.Up {
				t.Errorf("%s: created up", o)
			}
		case o.Kind == kernel.OpSetLink && o.Set == kernel.SetAlias:
			if !o.WithNext || i+1 == len(order) || order[i+1] != kernel.SetUpOp(o.Index, true) {
				t.Errorf("alias %s not sent together with the link's up: %v", o, order[i:])
			}
		}
	}
	if creates != 4 {
		t.Errorf("%d creates sent, want 4", creates)
	}
	h.checkConsistent()
}

// Requests queued together share one transaction.
func TestBatchIsOneCommit(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	m, err := New(Config{Kernel: k, Store: s, Cloners: testCloners(t, DefaultMaxUnit), Logger: quietLogger(), ResyncTick: -1})
	if err != nil {
		t.Fatal(err)
	}
	const n = 200
	var wg sync.WaitGroup
	names := make(chan string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			in, err := m.Create(context.Background(), CreateRequest{Name: "bridge"})
			if err != nil {
				t.Error(err)
			}
			names <- in.Name
		}()
	}
	for len(m.q.reqs) < n {
		time.Sleep(time.Millisecond)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	wg.Wait()
	close(names)
	seen := map[string]bool{}
	for name := range names {
		if seen[name] {
			t.Errorf("duplicate %s", name)
		}
		seen[name] = true
	}
	if got := s.Commits(); got != 1 {
		t.Errorf("%d creates queued together took %d commits, want 1", n, got)
	}
	cancel()
	<-done
}

func TestPersistFailureAllocatesNothing(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := start(t, k, s, DefaultMaxUnit)
	s.fail = errors.New("flash is full")
	if _, err := h.create("bridge"); !errors.Is(err, ErrPersist) {
		t.Fatalf("got %v, want ErrPersist", err)
	}
	if k.creates != 0 {
		t.Fatal("a link was created without a committed record")
	}
	s.fail = nil
	h.mustCreate("bridge", "bridge0")
	h.checkConsistent()
}

func TestKernelFailureFreesUnit(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	k.failCreate = func(string) error { return errors.New("ENOMEM") }
	h := start(t, k, s, DefaultMaxUnit)
	if _, err := h.create("bridge"); !errors.Is(err, ErrKernel) {
		t.Fatalf("got %v, want ErrKernel", err)
	}
	k.failCreate = nil
	h.mustCreate("bridge", "bridge0")
	h.checkConsistent()
}

func TestRestartKeepsUnits(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := start(t, k, s, DefaultMaxUnit)
	for i := 0; i < 5; i++ {
		h.create("bridge")
	}
	h.m.Destroy(context.Background(), "bridge2")
	h.settle()
	before, _ := h.m.List(context.Background())
	h.stop()
	commits := s.Commits()

	h2 := start(t, k, s, DefaultMaxUnit)
	after, _ := h2.m.List(context.Background())
	if fmt.Sprint(before) != fmt.Sprint(after) {
		t.Errorf("after restart:\n%v\nbefore:\n%v", after, before)
	}
	if s.Commits() != commits {
		t.Errorf("a clean restart wrote the DB %d times", s.Commits()-commits)
	}
	h2.mustCreate("bridge", "bridge2")
	h2.checkConsistent()
}

// Crash points, replayed by building the state a crash would leave.
func TestStartupReconcilesCrashStates(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	// Crash after the record committed, before the kernel create.
	s.Apply([]persist.Record{{Cloner: "bridge", Unit: 0, Identity: persist.Identity{Name: "bridge0"}}}, nil)
	// Crash after create (down), before the alias and up were written.
	k.add(kernel.Link{Name: "bridge1", Kind: "bridge", Group: DefaultOwnerGroup})
	s.Apply([]persist.Record{{Cloner: "bridge", Unit: 1, Identity: persist.Identity{Name: "bridge1"}}}, nil)
	// Record lost (or DB rebuilt) but the link is ours: adopt from the alias.
	k.add(kernel.Link{Name: "bridge2", Kind: "bridge", Group: DefaultOwnerGroup, Alias: persist.Identity{Name: "bridge2", Rule: "lan"}.Alias()})
	// Record committed, then a foreign link took the name while we were down.
	s.Apply([]persist.Record{{Cloner: "bridge", Unit: 3, Identity: persist.Identity{Name: "bridge3"}}}, nil)
	k.add(kernel.Link{Name: "bridge3", Kind: "bridge"})

	h := start(t, k, s, DefaultMaxUnit)
	h.checkConsistent()
	list, _ := h.m.List(context.Background())
	if len(list) != 2 || list[0].Name != "bridge1" || list[1].Name != "bridge2" {
		t.Fatalf("after reconcile: %+v", list)
	}
	if list[1].Identity != (persist.Identity{Name: "bridge2", Rule: "lan"}).Key() {
		t.Errorf("identity not recovered from alias: %q", list[1].Identity)
	}
	if l, _ := k.LinkByName("bridge1"); l.Alias == "" || l.Flags&iffUp == 0 {
		// Links are created down and set up behind their alias: no
		// alias means the up never went out either.
		t.Errorf("crash between create and alias not finished: alias %q, flags %#x", l.Alias, l.Flags)
	}
	if l, _ := k.LinkByName("bridge2"); l.Flags&iffUp != 0 {
		t.Error("a down link of ours with its alias was set up: that down is an operator's")
	}
	h.mustCreate("bridge", "bridge0") // freed, not leaked
	h.mustCreate("bridge", "bridge4") // 3 is held by the foreign link
}

func TestCancelledRequestIsNotExecuted(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	m, _ := New(Config{Kernel: k, Store: s, Cloners: testCloners(t, DefaultMaxUnit), Logger: quietLogger(), ResyncTick: -1})
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error)
	go func() { _, err := m.Create(ctx, CreateRequest{Name: "bridge"}); errc <- err }()
	for len(m.q.reqs) == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v", err)
	}
	rctx, rcancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(rctx) }()
	list, _ := m.List(context.Background())
	if len(list) != 0 || k.creates != 0 {
		t.Errorf("cancelled request executed: %+v", list)
	}
	rcancel()
	<-done
}

func TestShutdownLeavesNoGoroutine(t *testing.T) {
	defer goleak.VerifyNone(t)
	k, s := newFakeKernel(), newFakeStore()
	m, _ := New(Config{Kernel: k, Store: s, Watcher: k.watch(), Cloners: testCloners(t, DefaultMaxUnit), Logger: quietLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- m.Run(ctx) }()
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); m.Create(context.Background(), CreateRequest{Name: "bridge"}) }()
	}
	time.Sleep(5 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if _, err := m.Create(context.Background(), CreateRequest{Name: "bridge"}); !errors.Is(err, ErrClosed) {
		t.Errorf("after shutdown: %v, want ErrClosed", err)
	}
}

// A link of ifmgr's own (marker group and kind) that the tables did not know
// takes the name being created: it is adopted under the identity its alias
// carries, never handed to the request, and the wildcard moves on.
func TestOwnLinkTakesNameDuringCreate(t *testing.T) {
	k := newFakeKernel()
	k.beforeCreate = func(name string) {
		if name == "bridge1" {
			k.add(kernel.Link{Name: name, Kind: kernel.KindBridge, Group: DefaultOwnerGroup, Alias: persist.Identity{Name: "bridge1"}.Alias()})
		}
	}
	s := newFakeStore()
	h := start(t, k, s, DefaultMaxUnit)
	h.mustCreate("bridge", "bridge0")
	h.mustCreate("bridge", "bridge2")
	k.beforeCreate = nil
	list, _ := h.m.List(context.Background())
	if len(list) != 3 || list[1].Name != "bridge1" || list[1].Identity != "name=bridge1" || list[1].State == "absent" {
		t.Fatalf("own link not adopted: %+v", list)
	}
	h.checkConsistent()
}

// burst takes every batch already queued, in order, and no more than that;
// a closed channel is reported after the batches before it.
func TestBurstCoalescesQueuedEvents(t *testing.T) {
	ch := make(chan []kernel.Event, 8)
	ev := func(i uint32) []kernel.Event {
		return []kernel.Event{{Type: kernel.EventNew, Link: kernel.Link{Index: i}}}
	}
	ch <- ev(2)
	ch <- ev(3)
	got, closed := burst(ev(1), ch)
	if closed || len(got) != 3 || got[0].Link.Index != 1 || got[1].Link.Index != 2 || got[2].Link.Index != 3 {
		t.Fatalf("burst = %+v, closed %v; want events 1, 2, 3 in order", got, closed)
	}
	ch <- ev(4)
	close(ch)
	got, closed = burst(ev(5), ch)
	if !closed || len(got) != 2 || got[1].Link.Index != 4 {
		t.Fatalf("burst over a closed channel = %+v, closed %v", got, closed)
	}
}

// A burst touching most links is re-read with one dump, not a get per link,
// and the manager ends where the gets would have left it.
func TestEventBurstReadByDump(t *testing.T) {
	k := newFakeKernel()
	h := start(t, k, newFakeStore(), DefaultMaxUnit)
	var evs []kernel.Event
	for i := range 2 * dumpOver {
		l, _ := k.add(kernel.Link{Name: fmt.Sprintf("eth%d", i), Flags: iffUp})
		evs = append(evs, kernel.Event{Type: kernel.EventNew, Link: l})
	}
	h.settle()
	// The owner stops; the test is the owner now. Rename every link behind
	// its back and hand it the renames' events as one burst (an event
	// that agrees with the table is not re-read at all).
	h.stop()
	k.mu.Lock()
	evs = evs[:0]
	for i, l := range k.links {
		l.Name = "x" + l.Name
		k.links[i] = l
		evs = append(evs, kernel.Event{Type: kernel.EventNew, Link: l})
	}
	dumps, gets := k.dumps, k.gets
	k.mu.Unlock()
	h.m.handleEvents(evs)
	k.mu.Lock()
	dumps, gets = k.dumps-dumps, k.gets-gets
	k.mu.Unlock()
	if dumps != 1 || gets != 0 {
		t.Errorf("burst of %d links re-read with %d dumps and %d gets, want 1 dump", len(evs), dumps, gets)
	}
	n := 0
	h.m.links.each(func(l kernel.Link) {
		if l.Name[0] == 'x' {
			n++
		}
	})
	if n != len(evs) {
		t.Fatalf("%d renamed links seen after the burst, want %d", n, len(evs))
	}
}
