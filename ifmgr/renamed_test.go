package ifmgr

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sort"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

// ownedByIdentity counts the kernel's owned links by the identity their
// alias names: the promise is one link per identity, whatever names another
// process gives them.
func ownedByIdentity(t *testing.T, k *fakeKernel) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for name, l := range k.names() {
		if l.Group != DefaultOwnerGroup {
			continue
		}
		id, ok := persist.IdentityFromAlias(l.Alias)
		if !ok {
			t.Errorf("owned link %s has no identity alias (%q)", name, l.Alias)
			continue
		}
		out[id.Key()] = append(out[id.Key()], name)
	}
	for key, names := range out {
		if len(names) > 1 {
			t.Errorf("identity %s claimed by %d owned links: %v", key, len(names), names)
		}
	}
	return out
}

func (h *harness) listed() map[string]Info {
	h.t.Helper()
	h.settle()
	list, err := h.m.List(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]Info{}
	for _, in := range list {
		if _, dup := out[in.Name]; dup {
			h.t.Errorf("%s listed twice", in.Name)
		}
		out[in.Name] = in
	}
	return out
}

// An ifctl-made bridge renamed by another process out of the unit space
// (ip link set bridge1 name fo1) is adopted: it keeps its record and unit
// (bridge1 is not handed out again, before or after a restart), is listed
// under its current name, and its unit comes back only when the link goes.
// Renamed into another unit's name, it holds that unit too.
func TestOwnLinkRenamedFromOutside(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := start(t, k, s, DefaultMaxUnit)
	h.mustCreate("bridge", "bridge0")
	h.mustCreate("bridge", "bridge1")
	b1 := k.names()["bridge1"]
	if err := k.rename(b1.Index, "fo1"); err != nil {
		t.Fatal(err)
	}
	check := func(when string) {
		t.Helper()
		ownedByIdentity(t, k)
		in, ok := h.listed()["fo1"]
		if !ok || in.Unit != 1 || in.RenamedFrom != "bridge1" || in.Index != b1.Index || in.Identity != "name=bridge1" {
			t.Errorf("%s: fo1 listed as %+v (present %v), want unit 1 renamed from bridge1", when, in, ok)
		}
		st, _ := h.m.Status(context.Background())
		if st.Renamed["bridge1"] != "fo1" {
			t.Errorf("%s: status renamed = %v, want bridge1 -> fo1", when, st.Renamed)
		}
	}
	check("after the rename")
	h.mustCreate("bridge", "bridge2")
	h.stop()
	h = start(t, k, s, DefaultMaxUnit)
	check("after a restart")
	h.mustCreate("bridge", "bridge3")
	if s.Commits() == 0 {
		t.Fatal("no commits at all")
	}

	// Destroy by the current name works (an ifctl-made bridge goes only by
	// ifctl destroy, or by its link going).
	if err := k.rename(b1.Index, "bridge9"); err != nil { // into the unit space
		t.Fatal(err)
	}
	h.settle()
	ownedByIdentity(t, k)
	if in := h.listed()["bridge9"]; in.Unit != 1 || in.RenamedFrom != "bridge1" {
		t.Errorf("renamed into bridge9: listed as %+v", in)
	}
	if _, ok := h.listed()["bridge1"]; ok {
		t.Errorf("bridge1 listed although its link is named bridge9")
	}
	h.mustCreate("bridge", "bridge4")
	if err := h.m.Destroy(context.Background(), "bridge9"); err != nil {
		t.Fatalf("destroy by the current name: %v", err)
	}
	if _, ok := k.names()["bridge9"]; ok {
		t.Error("destroy left the link")
	}
	h.mustCreate("bridge", "bridge1")
	h.mustCreate("bridge", "bridge5")
	h.mustCreate("bridge", "bridge6")
	h.mustCreate("bridge", "bridge7")
	h.mustCreate("bridge", "bridge8")
	h.mustCreate("bridge", "bridge9")

	// Renamed away, then deleted from outside: the unit comes back.
	b2 := k.names()["bridge2"]
	k.rename(b2.Index, "fo2")
	h.settle()
	h.mustCreate("bridge", "bridge10")
	k.Delete(b2.Index)
	h.settle()
	h.mustCreate("bridge", "bridge2")
	// Renamed away and back: nothing changes.
	b3 := k.names()["bridge3"]
	k.rename(b3.Index, "fo3")
	h.settle()
	k.rename(b3.Index, "bridge3")
	if in := h.listed()["bridge3"]; in.Index != b3.Index || in.RenamedFrom != "" {
		t.Errorf("renamed back: bridge3 listed as %+v", in)
	}
	h.mustCreate("bridge", "bridge11")
	ownedByIdentity(t, k)
	h.checkConsistent()
}

// A profile bridge renamed from outside keeps serving its identity: the
// profile does not make a second one under the reserved name; once the
// renamed link is deleted, the profile re-creates it under its own name.
func TestProfileBridgeRenamedFromOutside(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := startWithProfile(t, k, s, mustProfile(t, testProfile))
	guest, ok := h.present()["bridge0"]
	if !ok || guest.Identity != "rule=bridge/guest" {
		t.Fatalf("no guest bridge: %v", h.present())
	}
	if err := k.rename(guest.Index, "fo0"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	ownedByIdentity(t, k)
	if _, ok := k.names()["bridge0"]; ok {
		t.Error("the profile made a second guest bridge as bridge0")
	}
	if in := h.listed()["fo0"]; in.Unit != 0 || in.RenamedFrom != "bridge0" || in.State == "absent" {
		t.Errorf("fo0 listed as %+v", in)
	}
	h.stop()
	h = startWithProfile(t, k, s, mustProfile(t, testProfile))
	h.settle()
	ownedByIdentity(t, k)
	if _, ok := k.names()["bridge0"]; ok {
		t.Error("after a restart the profile made a second guest bridge as bridge0")
	}
	if err := k.Delete(guest.Index); err != nil {
		t.Fatal(err)
	}
	h.settle()
	if l, ok := k.names()["bridge0"]; !ok || l.Group != DefaultOwnerGroup {
		t.Errorf("guest bridge not re-created as bridge0 after fo0 went: %v", k.names())
	}
	ownedByIdentity(t, k)
	h.checkConsistent()
}

// TestRandomOwnRenames: another process renames ifmgr's own bridges out of
// the unit space, into other units' names and back, deletes them, and adds
// foreign links, between random creates, destroys (by the name list shows)
// and restarts. After every step: one owned link per identity, a record
// for every owned link and an owned link for every record (by identity,
// whatever its name), the wildcard hands out the lowest unit neither a
// link's name nor a renamed link's identity takes, and exactly the units
// whose names other links have are held.
func TestRandomOwnRenames(t *testing.T) {
	const maxUnit = 30
	for seed := int64(1); seed <= 8; seed++ {
		t.Run(fmt.Sprint("seed=", seed), func(t *testing.T) {
			rng := rand.New(rand.NewSource(seed))
			k, s := newFakeKernel(), newFakeStore()
			h := start(t, k, s, maxUnit)
			ctx := context.Background()
			owned := func() []kernel.Link {
				var out []kernel.Link
				for _, l := range k.names() {
					if l.Group == DefaultOwnerGroup {
						out = append(out, l)
					}
				}
				sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
				return out
			}
			var trace []string // what the other process did, shown on failure
			defer func() {
				if t.Failed() {
					t.Logf("the other process, last steps:\n%s", strings.Join(trace[max(0, len(trace)-20):], "\n"))
				}
			}()
			for step := 0; step < 500; step++ {
				switch op := rng.Intn(12); {
				case op < 4:
					h.settle()
					want := lowestUnreserved(k, maxUnit)
					in, err := h.create("bridge")
					switch {
					case want < 0 && !errors.Is(err, ErrUnitRange):
						t.Fatalf("step %d: full cloner answered %v", step, err)
					case want >= 0 && (err != nil || in.Name != fmt.Sprintf("bridge%d", want)):
						t.Fatalf("step %d: wildcard gave %q %v, want bridge%d", step, in.Name, err, want)
					}
				case op < 6:
					h.settle() // the list is not stale: what it names exists
					list, _ := h.m.List(ctx)
					if len(list) > 0 {
						in := list[rng.Intn(len(list))]
						if err := h.m.Destroy(ctx, in.Name); err != nil {
							t.Fatalf("step %d: destroy %s: %v", step, in.Name, err)
						}
					}
				case op < 9:
					if o := owned(); len(o) > 0 {
						l := o[rng.Intn(len(o))]
						to := fmt.Sprintf("fo%d", step)
						switch rng.Intn(3) {
						case 0:
							to = fmt.Sprintf("bridge%d", rng.Intn(maxUnit+3))
						case 1:
							if id, ok := persist.IdentityFromAlias(l.Alias); ok {
								to = id.Name // back home
							}
						}
						err := k.rename(l.Index, to)
						trace = append(trace, fmt.Sprintf("step %d: rename %s (%d) -> %s: %v", step, l.Name, l.Index, to, err))
					}
				case op < 10:
					if o := owned(); len(o) > 0 {
						l := o[rng.Intn(len(o))]
						k.Delete(l.Index)
						trace = append(trace, fmt.Sprintf("step %d: delete %s (%d)", step, l.Name, l.Index))
					}
				case op < 11:
					if l, err := k.add(kernel.Link{Name: fmt.Sprintf("bridge%d", rng.Intn(maxUnit+3)), Kind: "veth"}); err == nil && rng.Intn(2) == 0 {
						k.Delete(l.Index)
					}
				case rng.Intn(4) == 0:
					h.stop()
					h = start(t, k, s, maxUnit)
					trace = append(trace, fmt.Sprintf("step %d: restart", step))
				}
				if step%10 == 0 {
					h.checkByIdentity(maxUnit)
					if t.Failed() {
						t.Fatalf("step %d", step)
					}
				}
			}
			h.checkByIdentity(maxUnit)
		})
	}
}

// lowestUnreserved is the reference answer for the wildcard: the lowest
// unit whose name no link has and whose identity (name=bridgeN) no renamed
// owned link claims.
func lowestUnreserved(k *fakeKernel, maxUnit int) int {
	taken := map[string]bool{}
	for name, l := range k.names() {
		taken[name] = true
		if id, ok := persist.IdentityFromAlias(l.Alias); ok && l.Group == DefaultOwnerGroup {
			taken[id.Name] = true
		}
	}
	for u := 0; u <= maxUnit; u++ {
		if !taken[fmt.Sprintf("bridge%d", u)] {
			return u
		}
	}
	return -1
}

// checkByIdentity: records and owned links agree by identity (the name
// may be another's), one owned link per identity, and the held units are
// exactly the unrecorded units whose names other links have.
func (h *harness) checkByIdentity(maxUnit int) {
	h.t.Helper()
	h.settle()
	byID := ownedByIdentity(h.t, h.k)
	recs, _ := h.s.Records()
	recorded := map[string]bool{}
	units := map[uint32]bool{}
	for _, r := range recs {
		recorded[r.Identity.Key()] = true
		units[r.Unit] = true
		if len(byID[r.Identity.Key()]) != 1 {
			h.t.Errorf("record bridge%d (%s) has owned links %v", r.Unit, r.Identity.Key(), byID[r.Identity.Key()])
		}
	}
	for key, names := range byID {
		if !recorded[key] {
			h.t.Errorf("owned link %v (%s) has no record", names, key)
		}
	}
	want := 0
	for name := range h.k.names() {
		var u uint32
		if n, _ := fmt.Sscanf(name, "bridge%d", &u); n == 1 && fmt.Sprintf("bridge%d", u) == name && u <= uint32(maxUnit) && !units[u] {
			want++
		}
	}
	st, _ := h.m.Status(context.Background())
	if st.Cloners[0].Held != want {
		h.t.Errorf("held %d units, other links have %d unrecorded unit names", st.Cloners[0].Held, want)
	}
	list, _ := h.m.List(context.Background())
	if len(list) != len(recs) {
		h.t.Errorf("manager lists %d interfaces, store has %d records", len(list), len(recs))
	}
}
