package ifmgr

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// queuedHarness builds a manager whose requests the test queues before Run
// starts, so that they reach the owner as one batch, as a pipelining
// connection's do when it reads ahead.
func queuedHarness(t *testing.T, k *fakeKernel) *harness {
	t.Helper()
	s := newFakeStore()
	m, err := New(Config{Kernel: k, Store: s, Watcher: k.watch(), Cloners: testCloners(t, DefaultMaxUnit), Logger: quietLogger(), ResyncTick: -1})
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, k: k, s: s, m: m}
}

func (h *harness) run() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.errc = make(chan error, 1)
	go func() { h.errc <- h.m.Run(ctx) }()
	h.t.Cleanup(h.stop)
}

// Creates queued one after another are answered in that order, after one
// commit for all of them.
func TestQueuedCreatesOneCommitInOrder(t *testing.T) {
	h := queuedHarness(t, newFakeKernel())
	const n = 100
	var waits []func() (Info, error)
	for range n {
		waits = append(waits, h.m.QueueCreate(context.Background(), CreateRequest{Name: "bridge"}, nil))
	}
	h.run()
	for i, wait := range waits {
		in, err := wait()
		if err != nil || in.Name != fmt.Sprintf("bridge%d", i) {
			t.Fatalf("create %d: %v %v, want bridge%d", i, in.Name, err, i)
		}
	}
	if c := h.s.Commits(); c != 1 {
		t.Errorf("%d queued creates: %d commits, want 1", n, c)
	}
	h.checkConsistent()
}

// A chain stops at its first failure: the chained requests behind it are
// skipped, though queued in the same batch; a request outside the chain is
// not.
func TestChainSkipsAfterFailure(t *testing.T) {
	h := queuedHarness(t, newFakeKernel())
	ctx := context.Background()
	chain := new(Chain)
	first := h.m.QueueCreate(ctx, CreateRequest{Name: "bridge3"}, chain)
	again := h.m.QueueCreate(ctx, CreateRequest{Name: "bridge3"}, chain)
	behind := h.m.QueueCreate(ctx, CreateRequest{Name: "bridge"}, chain)
	destroy := h.m.QueueDestroy(ctx, "bridge3", chain)
	other := h.m.QueueCreate(ctx, CreateRequest{Name: "bridge"}, nil)
	h.run()
	if in, err := first(); err != nil || in.Name != "bridge3" {
		t.Fatalf("first: %v %v", in.Name, err)
	}
	if _, err := again(); !errors.Is(err, ErrUnitExists) {
		t.Fatalf("bridge3 again: %v, want ErrUnitExists", err)
	}
	if _, err := behind(); !errors.Is(err, ErrSkipped) {
		t.Errorf("create behind the failure: %v, want ErrSkipped", err)
	}
	if err := destroy(); !errors.Is(err, ErrSkipped) {
		t.Errorf("destroy behind the failure: %v, want ErrSkipped", err)
	}
	if in, err := other(); err != nil || in.Name != "bridge0" {
		t.Errorf("unchained create: %v %v, want bridge0", in.Name, err)
	}
	names := h.k.names()
	if len(names) != 2 || names["bridge3"].Index == 0 || names["bridge0"].Index == 0 {
		t.Errorf("kernel has %v, want bridge0 and bridge3", names)
	}
	h.checkConsistent()
}

// A create whose record committed with the batch but whose chain broke
// before its link was made (the kernel refused one before it) is skipped:
// its record is deleted, no link is made, its unit is free again.
func TestChainSkipsCommittedCreate(t *testing.T) {
	k := newFakeKernel()
	k.failCreate = func(name string) error {
		if name == "bridge1" {
			return errors.New("refused")
		}
		return nil
	}
	h := queuedHarness(t, k)
	ctx := context.Background()
	chain := new(Chain)
	var waits []func() (Info, error)
	for range 3 {
		waits = append(waits, h.m.QueueCreate(ctx, CreateRequest{Name: "bridge"}, chain))
	}
	h.run()
	if in, err := waits[0](); err != nil || in.Name != "bridge0" {
		t.Fatalf("first: %v %v", in.Name, err)
	}
	if _, err := waits[1](); !errors.Is(err, ErrKernel) {
		t.Fatalf("refused: %v, want ErrKernel", err)
	}
	if _, err := waits[2](); !errors.Is(err, ErrSkipped) {
		t.Fatalf("behind the refused one: %v, want ErrSkipped", err)
	}
	if names := k.names(); len(names) != 1 {
		t.Errorf("kernel has %v, want bridge0 only", names)
	}
	h.checkConsistent()
	k.failCreate = nil
	in, err := h.create("bridge")
	if err != nil || in.Name != "bridge1" {
		t.Errorf("next create: %v %v, want bridge1 (the units of the failed and skipped ones free)", in.Name, err)
	}
}
