package ifmgr

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"testing"

	"github.com/uroute/uroute/ifmgr/kernel"
)

// A foreign link holding bridge5 is renamed to bridge0 just as ifmgr
// creates bridge0 (`ip link set bridge5 name bridge0` racing `ifctl
// create bridge`): the create's EEXIST makes ifmgr ask the kernel who has
// bridge0, and it learns of the rename from that answer, before the
// rename's event arrives. The event then names only bridge0, so bridge5 is
// settled there or never: unit 5 must come back at once (the daemon's
// TestIntruderInUnitSpace kept it held until the 5-minute resync, about
// one run in five), unit 0 is held while the link has it, and once the
// link is deleted no unit is held. Events alone do it: no resync.
func TestForeignRenameSeenFirstByCreate(t *testing.T) {
	k := newFakeKernel()
	h := start(t, k, newFakeStore(), DefaultMaxUnit)
	// ifmgr knows bridge5 and holds unit 5, with no event of it still on
	// its way (one naming bridge5 would settle it by chance): it is added
	// unheard, and a resync reads it.
	k.mu.Lock()
	k.muted = true
	k.mu.Unlock()
	f, err := k.add(kernel.Link{Name: "bridge5", Kind: "veth"})
	if err != nil {
		t.Fatal(err)
	}
	k.mu.Lock()
	k.muted = false
	k.mu.Unlock()
	h.settle()
	if st, _ := h.m.Status(context.Background()); st.Cloners[0].Held != 1 {
		t.Fatalf("bridge5 is foreign: %d units held, want 1", st.Cloners[0].Held)
	}
	k.beforeCreate = func(name string) {
		if name == "bridge0" {
			if err := k.rename(f.Index, "bridge0"); err != nil {
				t.Error(err)
			}
		}
	}
	h.mustCreate("bridge", "bridge1") // bridge0 taken under it: the next unit
	k.beforeCreate = nil
	waitStatus(t, h.m, func(st Status) bool { return st.Cloners[0].Held == 1 })
	h.mustCreate("bridge5", "bridge5") // its name is free: so is the unit
	if err := k.Delete(f.Index); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, h.m, func(st Status) bool { return st.Cloners[0].Held == 0 })
	h.mustCreate("bridge", "bridge0")
	if st, _ := h.m.Status(context.Background()); st.Resyncs["requested"] != 1 || st.Resyncs["lost-events"] != 0 {
		t.Errorf("converged by resync, not by events: %v", st.Resyncs)
	}
	h.checkConsistent()
}

// TestForeignNamesGiveUnitsBack: another process adds, renames (within the
// unit space, out of it and back) and deletes links in ifmgr's unit space
// while ifmgr creates and destroys, also at the moment ifmgr creates a
// name (in the create's EEXIST window), and now and then with its events
// lost (the watcher's ENOBUFS, an EventResync). Whatever the order in which
// ifmgr hears of it, once the other process's links are all deleted every
// unit a foreign name held comes back, through events alone (no requested
// resync), and the wildcard hands out the lowest units again.
func TestForeignNamesGiveUnitsBack(t *testing.T) {
	const maxUnit = 20
	for seed := int64(1); seed <= 16; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			k := newFakeKernel()
			h := start(t, k, newFakeStore(), maxUnit)
			ctx := context.Background()
			var foreign []uint32 // the other process's links, by ifindex
			unitName := func() string { return fmt.Sprintf("bridge%d", rng.Intn(maxUnit+3)) }
			lose := func(op func()) { // op's events are lost; the watcher says so
				k.mu.Lock()
				k.muted = true
				k.mu.Unlock()
				op()
				k.mu.Lock()
				k.muted = false
				k.mu.Unlock()
				k.events <- []kernel.Event{{Type: kernel.EventResync, Reason: "test: events lost"}}
			}
			intrude := func() {
				op := func() {
					switch rng.Intn(5) {
					case 0, 1:
						if l, err := k.add(kernel.Link{Name: unitName(), Kind: "veth"}); err == nil {
							foreign = append(foreign, l.Index)
						}
					case 2:
						if len(foreign) > 0 {
							k.rename(foreign[rng.Intn(len(foreign))], unitName())
						}
					case 3:
						if len(foreign) > 0 {
							i := foreign[rng.Intn(len(foreign))]
							if k.rename(i, fmt.Sprint("fo", i)) == nil {
								k.rename(i, unitName())
							}
						}
					case 4:
						if len(foreign) > 0 {
							j := rng.Intn(len(foreign))
							k.Delete(foreign[j])
							foreign = append(foreign[:j], foreign[j+1:]...)
						}
					}
				}
				if rng.Intn(30) == 0 {
					lose(op)
				} else {
					op()
				}
			}
			// The hook runs on the owner goroutine while this one waits
			// in Create: the two never touch rng or foreign at once.
			k.beforeCreate = func(name string) {
				switch rng.Intn(4) {
				case 0:
					intrude()
				case 1: // squat on the very name being created
					if len(foreign) > 0 {
						k.rename(foreign[rng.Intn(len(foreign))], name)
					}
				}
			}
			for step := 0; step < 300; step++ {
				switch rng.Intn(4) {
				case 0, 1:
					if _, err := h.create("bridge"); err != nil && !errors.Is(err, ErrUnitRange) {
						t.Fatalf("step %d: create: %v", step, err)
					}
				case 2:
					list, _ := h.m.List(ctx)
					if len(list) > 0 {
						name := list[rng.Intn(len(list))].Name
						if err := h.m.Destroy(ctx, name); err != nil {
							t.Fatalf("step %d: destroy %s: %v", step, name, err)
						}
					}
				case 3:
					intrude()
				}
			}
			k.beforeCreate = nil
			// Exactly the units whose names foreign links have are held.
			want := 0
			for name, l := range k.names() {
				var u int
				if n, _ := fmt.Sscanf(name, "bridge%d", &u); n == 1 && name == fmt.Sprint("bridge", u) && u <= maxUnit && l.Group != DefaultOwnerGroup {
					want++
				}
			}
			waitStatus(t, h.m, func(st Status) bool { return st.Cloners[0].Held == want })
			for _, i := range foreign {
				k.Delete(i)
			}
			waitStatus(t, h.m, func(st Status) bool { return st.Cloners[0].Held == 0 })
			if st, _ := h.m.Status(ctx); st.Resyncs["requested"] != 0 {
				t.Errorf("converged by a requested resync: %v", st.Resyncs)
			}
			// Every free unit below the highest in use is handed out
			// again, lowest first.
			list, _ := h.m.List(ctx)
			used := map[uint32]bool{}
			highest := -1
			for _, in := range list {
				used[in.Unit] = true
				highest = max(highest, int(in.Unit))
			}
			for u := range highest {
				if !used[uint32(u)] {
					h.mustCreate("bridge", fmt.Sprintf("bridge%d", u))
				}
			}
			h.checkConsistent()
		})
	}
}

// Another process renames two of ifmgr's bridges: bridge0 out of the unit
// space (fo0), then bridge1 into bridge0's name. `destroy bridge0` is a
// client giving back the interface it was given as bridge0, which still
// serves it under fo0: that link goes, not bridge1's, which has the name
// now (TestIntruderRenamesOwnLinks saw a client's destroy delete another
// client's bridge and leave its own). `destroy bridge1` then destroys
// bridge1's, by its unit's name although the kernel calls it bridge0.
// Afterwards no unit is held or reserved, and both come back.
func TestDestroyByUnitNameAnotherLinkHas(t *testing.T) {
	k := newFakeKernel()
	h := start(t, k, newFakeStore(), DefaultMaxUnit)
	h.mustCreate("bridge", "bridge0")
	h.mustCreate("bridge", "bridge1")
	b0, b1 := k.names()["bridge0"], k.names()["bridge1"]
	if err := k.rename(b0.Index, "fo0"); err != nil {
		t.Fatal(err)
	}
	if err := k.rename(b1.Index, "bridge0"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if in := h.listed()["bridge0"]; in.Index != b1.Index || in.RenamedFrom != "bridge1" {
		t.Fatalf("bridge1's link renamed to bridge0 listed as %+v", in)
	}
	gone := func(l kernel.Link) bool { _, err := k.LinkByIndex(l.Index); return errors.Is(err, kernel.ErrNotFound) }
	if err := h.m.Destroy(context.Background(), "bridge0"); err != nil {
		t.Fatalf("destroy bridge0: %v", err)
	}
	if !gone(b0) || gone(b1) {
		t.Fatalf("destroy bridge0: bridge0's link (fo0) gone %v, bridge1's (now bridge0) gone %v; want only the first", gone(b0), gone(b1))
	}
	if err := h.m.Destroy(context.Background(), "bridge1"); err != nil {
		t.Fatalf("destroy bridge1: %v", err)
	}
	if !gone(b1) {
		t.Fatal("destroy bridge1 left its link (named bridge0)")
	}
	waitStatus(t, h.m, func(st Status) bool { return st.Cloners[0].Held == 0 && len(st.Renamed) == 0 })
	h.mustCreate("bridge", "bridge0")
	h.mustCreate("bridge", "bridge1")
	h.checkConsistent()
}
