package ifmgr

import (
	"fmt"
	"math/rand"
	"net"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

// checkLinkTable asserts linkTable's invariants (see its doc comment).
func checkLinkTable(t *testing.T, lt *linkTable) {
	t.Helper()
	for name, i := range lt.byName {
		if l, ok := lt.byIndex.get(i); !ok || l.Name != name {
			t.Fatalf("byName[%q] = %d, which is %+v (present %v)", name, i, l, ok)
		}
	}
	if len(lt.byIndex.pos) != len(lt.byIndex.rows) {
		t.Fatalf("byIndex: %d positions for %d links", len(lt.byIndex.pos), len(lt.byIndex.rows))
	}
	for i, p := range lt.byIndex.pos {
		if l := lt.byIndex.rows[p].link; i != l.Index || i == 0 {
			t.Fatalf("byIndex[%d] holds ifindex %d", i, l.Index)
		}
		if got, ok := lt.get(i); !ok || got.Index != i {
			t.Fatalf("get(%d) = %+v, %v", i, got, ok)
		}
	}
}

// checkEntryTable asserts entryTable's invariants (see its doc comment).
func checkEntryTable(t *testing.T, et *entryTable) {
	t.Helper()
	keys := map[string]int{}
	for name, e := range et.byName {
		if e.name() != name {
			t.Fatalf("byName[%q] holds %s", name, e.name())
		}
		keys[e.rec.Identity.Key()]++
		if e.index != 0 && et.byIndex[e.index] != e {
			t.Fatalf("%s has ifindex %d but byIndex leads to %v", name, e.index, et.byIndex[e.index])
		}
		if e.renamedTo != "" && e.index == 0 {
			t.Fatalf("%s renamed to %s but has no link", name, e.renamedTo)
		}
	}
	for k, e := range et.byIdentity {
		if e.rec.Identity.Key() != k || et.byName[e.name()] != e {
			t.Fatalf("byIdentity[%q] leads to %s (key %q), not an entry of the table", k, e.name(), e.rec.Identity.Key())
		}
	}
	shadowed := 0
	for k, n := range keys {
		if et.byIdentity[k] == nil {
			t.Fatalf("identity %q of %d entries not indexed", k, n)
		}
		shadowed += n - 1
	}
	if len(et.byIdentity) != len(keys) || shadowed != et.shadowed {
		t.Fatalf("byIdentity has %d keys, entries %d; shadowed %d, counted %d", len(et.byIdentity), len(keys), shadowed, et.shadowed)
	}
	for i, e := range et.byIndex {
		if i == 0 || e.index != i || et.byName[e.name()] != e {
			t.Fatalf("byIndex[%d] leads to %s with ifindex %d", i, e.name(), e.index)
		}
	}
}

func seededRand(t *testing.T) *rand.Rand {
	seed := time.Now().UnixNano()
	t.Logf("seed %d (rerun a failure by putting it here)", seed)
	return rand.New(rand.NewSource(seed))
}

// TestLinkTableProperty: any sequence of observes (new links, renames,
// a name moving to another ifindex), forgets, full replacements, fact reads
// and flag patches keeps both indexes consistent, and after a replace the
// table is exactly the dump.
func TestLinkTableProperty(t *testing.T) {
	r := seededRand(t)
	for run := 0; run < 200; run++ {
		lt := newLinkTable()
		link := func() kernel.Link {
			return kernel.Link{Index: uint32(1 + r.Intn(12)), Name: fmt.Sprintf("l%d", r.Intn(8))}
		}
		for step := 0; step < 60; step++ {
			switch op := r.Intn(7); op {
			case 0, 1:
				lt.observe(link())
			case 2:
				lt.forget(uint32(1 + r.Intn(12)))
			case 3:
				l := link()
				lt.factsOf(l, func(string) (string, string) { return "drv", "bus" })
			case 4:
				lt.markUp(uint32(1 + r.Intn(12)))
				lt.setMaster(uint32(1+r.Intn(12)), uint32(r.Intn(12)))
			case 5:
				// A dump: unique ifindexes and names, as the kernel gives.
				var dump []kernel.Link
				usedName := map[string]bool{}
				for i := uint32(1); i <= 12; i++ {
					if l := link(); r.Intn(2) == 0 && !usedName[l.Name] {
						usedName[l.Name] = true
						dump = append(dump, kernel.Link{Index: i, Name: l.Name})
					}
				}
				lt.replace(dump)
				checkLinkTable(t, &lt)
				if lt.len() != len(dump) {
					t.Fatalf("after replace: %d links, dump had %d", lt.len(), len(dump))
				}
				for _, l := range dump {
					if got, ok := lt.named(l.Name); !ok || got.Index != l.Index {
						t.Fatalf("after replace: %q is %+v, want ifindex %d", l.Name, got, l.Index)
					}
				}
			case 6:
				n := 0
				lt.each(func(l kernel.Link) {
					n++
					if got, ok := lt.get(l.Index); !ok || got.Name != l.Name {
						t.Fatalf("each and get disagree on %d", l.Index)
					}
				})
				if n != lt.len() {
					t.Fatalf("each saw %d links, len is %d", n, lt.len())
				}
			}
			checkLinkTable(t, &lt)
		}
	}
}

func TestLinkTableRenameDropsFacts(t *testing.T) {
	lt := newLinkTable()
	lt.observe(kernel.Link{Index: 3, Name: "eth0"})
	reads := 0
	read := func(string) (string, string) { reads++; return "e1000", "pci" }
	lt.factsOf(kernel.Link{Index: 3, Name: "eth0"}, read)
	lt.factsOf(kernel.Link{Index: 3, Name: "eth0"}, read)
	if reads != 1 {
		t.Fatalf("facts read %d times, want once", reads)
	}
	lt.observe(kernel.Link{Index: 3, Name: "lan0"}) // renamed: re-read
	if _, ok := lt.named("eth0"); ok {
		t.Fatal("old name still leads somewhere")
	}
	lt.factsOf(kernel.Link{Index: 3, Name: "lan0"}, read)
	if reads != 2 {
		t.Fatalf("facts of a renamed link not re-read (%d reads)", reads)
	}
	// A new link takes a name before the old holder's event arrives.
	lt.observe(kernel.Link{Index: 4, Name: "lan0"})
	if l, _ := lt.named("lan0"); l.Index != 4 {
		t.Fatalf("lan0 leads to %d, want the link observed last", l.Index)
	}
	lt.forget(3) // the stale holder's event: must not take the name from 4
	if l, ok := lt.named("lan0"); !ok || l.Index != 4 {
		t.Fatalf("forgetting the stale holder lost lan0: %+v %v", l, ok)
	}
	checkLinkTable(t, &lt)
}

// TestEntryTableProperty: any sequence of adds (with names and identities
// drawn from small sets, so replacements and shared identities happen),
// removes, attaches, detaches and stamps keeps the three indexes
// consistent.
func TestEntryTableProperty(t *testing.T) {
	r := seededRand(t)
	c, err := NewCloner("bridge", kernel.KindBridge, "br%d", 100)
	if err != nil {
		t.Fatal(err)
	}
	for run := 0; run < 200; run++ {
		et := newEntryTable()
		var made []*entry
		pick := func() *entry {
			if len(made) == 0 {
				return nil
			}
			return made[r.Intn(len(made))]
		}
		for step := 0; step < 60; step++ {
			switch op := r.Intn(6); op {
			case 0, 1:
				e := &entry{cloner: c, rec: persist.Record{Cloner: "bridge", Unit: uint32(r.Intn(10)),
					Identity: persist.Identity{Rule: fmt.Sprintf("bridge/r%d", r.Intn(5))}}}
				if r.Intn(3) == 0 {
					e.index = uint32(1 + r.Intn(8))
				}
				et.add(e)
				made = append(made, e)
			case 2:
				if e := pick(); e != nil {
					et.remove(e)
				}
			case 3:
				if e := pick(); e != nil {
					et.attach(e, uint32(1+r.Intn(8)))
				}
			case 4:
				if e := pick(); e != nil {
					et.detach(e)
				}
			case 5:
				if e := pick(); e != nil {
					et.stamp(e, uint64(step))
				}
			}
			checkEntryTable(t, &et)
		}
		// Emptying the table leaves every index empty.
		for _, e := range made {
			et.remove(e)
		}
		checkEntryTable(t, &et)
		if et.len() != 0 || len(et.byIdentity) != 0 || len(et.byIndex) != 0 || et.shadowed != 0 {
			t.Fatalf("emptied table: %d names, %d identities, %d ifindexes, %d shadowed", et.len(), len(et.byIdentity), len(et.byIndex), et.shadowed)
		}
	}
}

func TestEntryTableSharedIdentity(t *testing.T) {
	c, _ := NewCloner("bridge", kernel.KindBridge, "br%d", 100)
	id := persist.Identity{Rule: "bridge/lan"}
	a := &entry{cloner: c, rec: persist.Record{Cloner: "bridge", Unit: 1, Identity: id}}
	b := &entry{cloner: c, rec: persist.Record{Cloner: "bridge", Unit: 2, Identity: id}}
	et := newEntryTable()
	et.add(a)
	et.add(b) // a damaged DB: two records, one identity
	if et.withIdentity(id.Key()) != a {
		t.Fatal("the first entry of an identity should keep it")
	}
	et.remove(a)
	if et.withIdentity(id.Key()) != b {
		t.Fatal("removing the first entry lost the identity of the second")
	}
	checkEntryTable(t, &et)
	et.attach(b, 7)
	if et.onLink(7) != b {
		t.Fatal("onLink after attach")
	}
	other := &entry{cloner: c, rec: persist.Record{Cloner: "bridge", Unit: 3, Identity: persist.Identity{Name: "br3"}}}
	et.add(other)
	et.attach(other, 7) // the ifindex moved: b no longer has it
	if b.index != 0 || et.onLink(7) != other {
		t.Fatalf("stale claim kept: b.index %d, onLink(7) %v", b.index, et.onLink(7))
	}
	checkEntryTable(t, &et)
}

// checkLinkVLANs asserts the membership invariant of linkTable: per link,
// ascending VIDs, one entry each, never an empty list.
func checkLinkVLANs(t *testing.T, lt *linkTable) {
	t.Helper()
	for i, vs := range lt.vlans {
		if len(vs) == 0 {
			t.Fatalf("vlans[%d] is kept empty", i)
		}
		for j := 1; j < len(vs); j++ {
			if vs[j-1].VID >= vs[j].VID {
				t.Fatalf("vlans[%d] not ascending and unique: %+v", i, vs)
			}
		}
	}
}

// TestLinkTableVLANsProperty: any sequence of dumps (in any order, with a
// VID repeated), adds, deletes, master changes and link removals keeps the
// membership invariant and agrees with a plain model of the kernel.
func TestLinkTableVLANsProperty(t *testing.T) {
	r := seededRand(t)
	for run := 0; run < 200; run++ {
		lt := newLinkTable()
		model := map[uint32]map[uint16]kernel.BridgeVLAN{}
		for i := uint32(1); i <= 6; i++ {
			lt.observe(kernel.Link{Index: i, Name: fmt.Sprintf("l%d", i), Master: 9})
		}
		entry := func() kernel.BridgeVLAN {
			return kernel.BridgeVLAN{VID: uint16(1 + r.Intn(8)), PVID: r.Intn(2) == 0, Untagged: r.Intn(2) == 0}
		}
		for step := 0; step < 60; step++ {
			idx := uint32(1 + r.Intn(6))
			switch r.Intn(5) {
			case 0: // a dump, entries in any order; the last of a VID wins
				dump := map[uint32][]kernel.BridgeVLAN{}
				model = map[uint32]map[uint16]kernel.BridgeVLAN{}
				for i := uint32(1); i <= 6; i++ {
					for n := r.Intn(4); n > 0; n-- {
						v := entry()
						dump[i] = append(dump[i], v)
						if model[i] == nil {
							model[i] = map[uint16]kernel.BridgeVLAN{}
						}
						model[i][v.VID] = v
					}
				}
				lt.setVLANs(dump)
			case 1:
				v := entry()
				lt.addVLAN(idx, v)
				if model[idx] == nil {
					model[idx] = map[uint16]kernel.BridgeVLAN{}
				}
				model[idx][v.VID] = v
			case 2:
				vid := uint16(1 + r.Intn(8))
				lt.delVLAN(idx, vid)
				delete(model[idx], vid)
			case 3: // ifmgr moves the port: the kernel flushed its entries
				lt.setMaster(idx, uint32(10+r.Intn(2)))
				if l, _ := lt.get(idx); l.Master != 9 {
					delete(model, idx)
				}
				lt.setMaster(idx, 9)
			case 4: // unplugged, then back with the same ifindex (a test's shortcut)
				lt.gone(idx)
				delete(model, idx)
				lt.observe(kernel.Link{Index: idx, Name: fmt.Sprintf("l%d", idx), Master: 9})
			}
			checkLinkVLANs(t, &lt)
			for i := uint32(1); i <= 6; i++ {
				got := lt.vlansOf(i)
				if len(got) != len(model[i]) {
					t.Fatalf("step %d: link %d has %+v, model %+v", step, i, got, model[i])
				}
				for _, v := range got {
					if model[i][v.VID] != v {
						t.Fatalf("step %d: link %d has %+v, model %+v", step, i, got, model[i])
					}
				}
			}
		}
	}
}

// TestLinkTableRowsKeepFactsAndAddresses: a link's sysfs facts and address
// texts are read once and stay with it when it is observed again and
// through a resync that still has it (also after other links left and
// rows moved), and go with it when it is gone.
func TestLinkTableRowsKeepFactsAndAddresses(t *testing.T) {
	lt := newLinkTable()
	reads := 0
	read := func(string) (string, string) { reads++; return "e1000", "pci" }
	mac := net.HardwareAddr{2, 0, 0, 0, 0, 3}
	links := []kernel.Link{{Index: 1, Name: "lo"}, {Index: 2, Name: "eth0", MAC: mac}, {Index: 3, Name: "eth1"}}
	for _, l := range links {
		lt.observe(l)
		lt.factsOf(l, read)
	}
	if m, _ := lt.macsOf(links[1]); m != "02:00:00:00:00:03" {
		t.Fatalf("address text %q", m)
	}
	lt.gone(1) // eth1's row moves into lo's place
	lt.observe(kernel.Link{Index: 2, Name: "eth0", MAC: mac, Flags: 1})
	lt.replace([]kernel.Link{links[1], links[2]})
	for _, l := range links[1:] {
		if f := lt.factsOf(l, read); f.driver != "e1000" {
			t.Fatalf("facts of %s: %+v", l.Name, f)
		}
	}
	if reads != 3 {
		t.Fatalf("facts read %d times, want once per link (3)", reads)
	}
	if r := lt.byIndex.row(2); r == nil || !r.haveMACs || r.macs.mac != "02:00:00:00:00:03" {
		t.Fatalf("eth0's address text not kept: %+v", r)
	}
	lt.gone(2)
	if lt.byIndex.row(2) != nil || lt.len() != 1 {
		t.Fatalf("gone link's row kept (%d rows)", lt.len())
	}
	checkLinkTable(t, &lt)
}

// TestPlannerDiffersCoversPlanLink: what plannerDiffers leaves out of a
// link (its alias, operational state and flags other than IFF_UP) is
// nothing planLink reads, and the link table marks a link changed for the
// planner exactly when plannerDiffers says so: an echo or a carrier flap
// is not named to the planner, an administrative down is.
func TestPlannerDiffersCoversPlanLink(t *testing.T) {
	m, err := New(Config{Kernel: newFakeKernel(), Store: newFakeStore(), Cloners: testCloners(t, DefaultMaxUnit), Logger: quietLogger(), ResyncTick: -1,
		Facts: func(string) (string, string) { return "e1000e", "pci-0000:00:03.0" }})
	if err != nil {
		t.Fatal(err)
	}
	base := kernel.Link{Index: 5, Name: "lan0", Kind: "veth", Alias: "a", MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1},
		Master: 7, Flags: iffUp | 1<<6, Oper: 6, IfLink: 4}
	m.links.observe(base)
	m.links.takeChanged()
	ignored := []func(*kernel.Link){
		func(l *kernel.Link) { l.Alias = "other" },
		func(l *kernel.Link) { l.Oper = 2 },
		func(l *kernel.Link) { l.Flags ^= ^uint32(iffUp) }, // IFF_RUNNING, IFF_LOWER_UP, ...: a carrier flap
	}
	for i, change := range ignored {
		l := base
		change(&l)
		if plannerDiffers(base, l) {
			t.Errorf("change %d: plannerDiffers sees it", i)
		}
		if got, want := m.planLink(l), m.planLink(base); !got.Equal(want) {
			t.Errorf("change %d: planLink reads what plannerDiffers leaves out:\n%+v\n%+v", i, got, want)
		}
		m.links.observe(l)
		if changed, all := m.links.takeChanged(); len(changed) != 0 || all {
			t.Errorf("change %d: marked changed for the planner: %v", i, changed)
		}
		m.links.observe(base)
		m.links.takeChanged()
	}
	down := base
	down.Flags &^= iffUp
	m.links.observe(down)
	if changed, _ := m.links.takeChanged(); !changed[base.Index] || !plannerDiffers(base, down) {
		t.Errorf("an administrative down is not marked changed: %v", changed)
	}
}

// TestPlanLinkPeerInOtherNamespace: a veth whose peer lives in another
// namespace reports the peer's ifindex there (IFLA_LINK with
// IFLA_LINK_NETNSID); the planner must not take it for the local link with
// that number, while a local peer or lower device is its parent.
func TestPlanLinkPeerInOtherNamespace(t *testing.T) {
	m, err := New(Config{Kernel: newFakeKernel(), Store: newFakeStore(), Cloners: testCloners(t, DefaultMaxUnit), Logger: quietLogger(), ResyncTick: -1})
	if err != nil {
		t.Fatal(err)
	}
	local := kernel.Link{Index: 4, Name: "lan1", Kind: "veth"}
	away := kernel.Link{Index: 5, Name: "lan0", Kind: "veth", IfLink: 4, IfLinkOtherNS: true}
	here := kernel.Link{Index: 6, Name: "lan2", Kind: "veth", IfLink: 4}
	for _, l := range []kernel.Link{local, away, here} {
		m.links.observe(l)
	}
	if p := m.planLink(away).ParentIndex; p != 0 {
		t.Errorf("peer in another namespace: parent %d, want none", p)
	}
	if p := m.planLink(here).ParentIndex; p != 4 {
		t.Errorf("peer here: parent %d, want 4", p)
	}
}
