package plan

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

// randomProfile writes a random valid profile: two shared bridges and a
// per-port one, filtering or not, kept empty or not, with self VLANs; port
// rules matching overlapping names, with bridges, VLANs, VLANs in bridges
// and bridge VLAN membership.
func randomProfile(r *rand.Rand) *board.Profile {
	for {
		var b strings.Builder
		b.WriteString("board = \"rand\"\n")
		filtering := map[string]bool{}
		for _, name := range []string{"x", "y", "pp"} {
			if r.IntN(4) == 0 {
				continue
			}
			fmt.Fprintf(&b, "[[bridge]]\nname = %q\n", name)
			if name == "pp" {
				b.WriteString("per_port = true\n")
			} else if r.IntN(2) == 0 {
				b.WriteString("keep_empty = true\n")
			}
			if r.IntN(3) == 0 {
				filtering[name] = true
				b.WriteString("vlan_filtering = true\n")
				if r.IntN(2) == 0 {
					b.WriteString("self_vlans = [1, 10]\n")
				}
			}
		}
		for i := range 1 + r.IntN(3) {
			fmt.Fprintf(&b, "[[port]]\nname = \"r%d\"\nmatch.name = %q\n", i, []string{"eth*", "eth1", "wl*", "*", "eth2*"}[r.IntN(5)])
			bridge := []string{"", "x", "y", "pp"}[r.IntN(4)]
			if bridge != "" {
				fmt.Fprintf(&b, "bridge = %q\n", bridge)
				if filtering[bridge] {
					b.WriteString("bridge_vlan = { pvid = 1, tagged = [10] }\n")
				}
			}
			if r.IntN(2) == 0 {
				b.WriteString("vlans = [10, 20]\n")
				if vb := []string{"x", "y"}[r.IntN(2)]; r.IntN(2) == 0 && !filtering[vb] {
					fmt.Fprintf(&b, "vlan_bridge = { 10 = %q }\n", vb)
				}
			}
		}
		if p, err := board.Parse("rand.toml", []byte(b.String())); err == nil {
			return p
		}
	}
}

// world is a random kernel that a partly applied plan left, and its
// random changes.
type world struct {
	r     *rand.Rand
	p     *board.Profile
	links []Link
	next  uint32
}

var portNames = []string{"eth0", "eth1", "eth2", "eth21", "wl0", "wl1", "lo", "dummy0"}

func (w *world) port() Link {
	w.next++
	l := Link{Index: w.next, Name: fmt.Sprintf("%s-%d", portNames[w.r.IntN(len(portNames))], w.next), Up: w.r.IntN(2) == 0,
		MAC: fmt.Sprintf("02:00:00:00:00:%02x", w.r.IntN(8))}
	if w.r.IntN(4) == 0 {
		l.Bus = fmt.Sprintf("pci-0000:00:%02x.0", w.r.IntN(4)) // a place without a permanent MAC
	}
	if w.r.IntN(3) == 0 {
		// A permanent MAC from a small pool: two links can share one.
		l.PermMAC = fmt.Sprintf("52:54:00:00:00:%02x", w.r.IntN(6))
	}
	if w.r.IntN(2) == 0 {
		l.Name = portNames[w.r.IntN(len(portNames))] // a plain name; may repeat a gone link's
	}
	return l
}

// applySome carries out a random part of plan pl on the world.
func (w *world) applySome(pl Plan) {
	byKey := map[string]uint32{}
	for _, l := range w.links {
		if l.Owned {
			byKey[l.Identity.Key()] = l.Index
		}
	}
	for _, a := range pl.Actions {
		if w.r.IntN(3) == 0 {
			continue
		}
		i := slices.IndexFunc(w.links, func(l Link) bool { return l.Index == a.Link })
		switch a.Kind {
		case Delete:
			if i >= 0 {
				w.links = slices.Delete(w.links, i, i+1)
			}
		case BringUp:
			if i >= 0 {
				w.links[i].Up = true
			}
		case Create:
			w.next++
			l := Link{Index: w.next, Name: fmt.Sprintf("own%d", w.next), Owned: true, Identity: a.Target.Identity, Up: true,
				ParentIndex: a.Target.ParentIndex, VLANID: a.Target.VID, Kind: kernel.KindBridge, VLANFiltering: a.Target.Options.VLANFiltering}
			if a.Target.Cloner == board.ClonerVLAN {
				l.Kind = kernel.KindVLAN
				if l.ParentIndex == 0 {
					l.ParentIndex = byKey[a.Target.ParentBridge]
				}
			}
			if a.Target.Master != "" {
				l.Master = byKey[a.Target.Master]
			}
			byKey[a.Target.Key()] = l.Index
			w.links = append(w.links, l)
		case SetMaster:
			if i >= 0 {
				w.links[i].Master, w.links[i].Enslaved, w.links[i].BridgeVLANs = byKey[a.Master], true, nil
			}
		case Release:
			if i >= 0 {
				w.links[i].Master, w.links[i].Enslaved, w.links[i].BridgeVLANs = 0, false, nil
			}
		case SetOptions:
			if i >= 0 {
				w.links[i].VLANFiltering, w.links[i].DefaultPVID = a.Options.VLANFiltering, a.Options.DefaultPVID
			}
		case AddVLAN:
			if i = slices.IndexFunc(w.links, func(l Link) bool { return l.Index == a.Link && a.Link != 0 }); i >= 0 {
				w.links[i].BridgeVLANs = append(slices.DeleteFunc(slices.Clone(w.links[i].BridgeVLANs), func(v kernel.BridgeVLAN) bool { return v.VID == a.VLAN.VID }), a.VLAN)
				slices.SortFunc(w.links[i].BridgeVLANs, func(a, b kernel.BridgeVLAN) int { return int(a.VID) - int(b.VID) })
			}
		case DelVLAN:
			if i = slices.IndexFunc(w.links, func(l Link) bool { return l.Index == a.Link && a.Link != 0 }); i >= 0 {
				w.links[i].BridgeVLANs = slices.DeleteFunc(slices.Clone(w.links[i].BridgeVLANs), func(v kernel.BridgeVLAN) bool { return v.VID == a.VLAN.VID })
			}
		}
	}
}

// mutate makes one random change from outside: a plug or unplug, a flap,
// a move to another bridge, a rename, a new MAC, membership changed, an
// owned link deleted or made foreign, filtering turned off.
func (w *world) mutate() {
	if len(w.links) == 0 || w.r.IntN(6) == 0 {
		w.links = append(w.links, w.port())
		return
	}
	i := w.r.IntN(len(w.links))
	l := &w.links[i]
	switch w.r.IntN(10) {
	case 0:
		w.links = slices.Delete(w.links, i, i+1)
	case 1:
		l.Up = !l.Up
	case 2:
		l.Master = 0
		if w.r.IntN(2) == 0 {
			l.Master = w.links[w.r.IntN(len(w.links))].Index
		}
		l.Enslaved = w.r.IntN(2) == 0 && l.Master != 0
		l.BridgeVLANs = nil
	case 3:
		l.Name = portNames[w.r.IntN(len(portNames))]
	case 4:
		l.MAC = fmt.Sprintf("02:00:00:00:01:%02x", w.r.IntN(8))
	case 5:
		l.BridgeVLANs = []kernel.BridgeVLAN{{VID: uint16(1 + w.r.IntN(20)), PVID: w.r.IntN(2) == 0}}
	case 6:
		l.Owned = !l.Owned
		if !l.Owned {
			l.Identity = persist.Identity{}
		}
	case 7:
		l.VLANFiltering = !l.VLANFiltering
	case 8:
		l.ParentIndex = w.links[w.r.IntN(len(w.links))].Index
	case 9:
		l.Enslaved = !l.Enslaved
	}
}

func normalize(pl Plan) Plan {
	if len(pl.Actions) == 0 {
		pl.Actions = nil
	}
	if len(pl.InPlace) == 0 {
		pl.InPlace = nil
	}
	return pl
}

// TestIncrementalEqualsFull: over random profiles and kernels, plans applied
// in part and random changes from outside, Planner.Update's plan is the
// full plan, Compute's, every time: same targets, same actions in the same
// order, same ports in place.
func TestIncrementalEqualsFull(t *testing.T) {
	seeds := 400
	if testing.Short() {
		seeds = 50
	}
	replanned, total, partial, plans := 0, 0, 0, 0
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 0x1ce))
		w := &world{r: r, p: randomProfile(r), next: 1}
		w.links = append(w.links, Link{Index: 1, Name: "lo"})
		for range 2 + r.IntN(8) {
			w.links = append(w.links, w.port())
		}
		tr := tracker{r: r}
		tr.known = tr.Update(w.p, w.links).Plan.Targets
		for step := range 40 {
			if r.IntN(2) == 0 {
				w.applySome(Compute(w.p, w.links))
			} else {
				for range 1 + r.IntN(3) {
					w.mutate()
				}
			}
			shuffled := slices.Clone(w.links)
			r.Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })
			up := tr.Update(w.p, shuffled)
			got, want := normalize(up.Plan), normalize(Compute(w.p, w.links))
			if !up.Full {
				// A plan in part has the targets it replanned; the owner
				// has the others from earlier plans, which must still be
				// what the profile wants.
				got.Targets = tr.merged(up.Plan.Targets, want.Targets)
			}
			tr.known = want.Targets
			replanned += up.Replanned
			total += len(w.links)
			plans++
			if !up.Full {
				partial++
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d step %d (changed %d, replanned %d, full %v): incremental plan differs\nprofile: %+v\nlinks: %+v\ngot:\n%s\nwant:\n%s\ngot targets %v\nwant targets %v\ngot in place %v want %v",
					seed, step, up.Changed, up.Replanned, up.Full, w.p, w.links, renderFull(got), renderFull(want), got.Targets, want.Targets, got.InPlace, want.InPlace)
			}
		}
	}
	t.Logf("replanned %d of %d link-plans (%.0f%%); %d of %d plans in part", replanned, total, 100*float64(replanned)/float64(total), partial, plans)
}

// TestLinkEqualCoversEveryField: a field added to Link must be compared by
// Equal, or a change of it would not be replanned.
func TestLinkEqualCoversEveryField(t *testing.T) {
	base := Link{Index: 1}
	typ := reflect.TypeOf(base)
	for i := range typ.NumField() {
		l := base
		f := reflect.ValueOf(&l).Elem().Field(i)
		switch f.Kind() {
		case reflect.String:
			f.SetString("x")
		case reflect.Bool:
			f.SetBool(true)
		case reflect.Uint16, reflect.Uint32:
			f.SetUint(7)
		case reflect.Slice:
			f.Set(reflect.ValueOf([]kernel.BridgeVLAN{{VID: 3}}))
		case reflect.Struct:
			f.Set(reflect.ValueOf(persist.Identity{Name: "x"}))
		default:
			t.Fatalf("field %s: kind %s not covered by this test", typ.Field(i).Name, f.Kind())
		}
		if base.Equal(l) {
			t.Errorf("Link.Equal ignores field %s", typ.Field(i).Name)
		}
	}
}

// tracker is the property test's owner of the links: it remembers what it
// last told the planner, as ifmgr's link table does, and names what
// changed since (plus, at times, a link that did not: that must cost a
// replan, never a wrong plan).
type tracker struct {
	pr    Planner
	told  map[uint32]Link
	r     *rand.Rand
	known map[string]Target // the targets of the last plan, as the owner knows them
}

// merged is the targets the owner knows after a plan in part that replanned
// replanned: those, and of the targets want has, the others as it knew
// them.
func (t *tracker) merged(replanned, want map[string]Target) map[string]Target {
	out := map[string]Target{}
	for k := range want {
		if old, ok := t.known[k]; ok {
			out[k] = old
		}
	}
	for k, tg := range replanned {
		out[k] = tg
	}
	return out
}

// Update returns Compute(p, links), planning again only the components of
// the links that changed since the last plan. A new profile is planned in
// full.
func (t *tracker) Update(p *board.Profile, links []Link) Update {
	now := make(map[uint32]Link, len(links))
	for _, l := range links {
		now[l.Index] = l
	}
	defer func() { t.told = now }()
	if !t.pr.Current(p) {
		return t.pr.Full(p, links)
	}
	var changed []uint32
	for _, l := range links {
		if old, ok := t.told[l.Index]; !ok || !old.Equal(l) || (t.r != nil && t.r.IntN(20) == 0) {
			changed = append(changed, l.Index)
		}
	}
	for idx := range t.told {
		if _, ok := now[idx]; !ok {
			changed = append(changed, idx)
		}
	}
	slices.Sort(changed) // the gone ones came in map order
	if t.r != nil && t.r.IntN(10) == 0 {
		changed = append(changed, 9999) // neither known nor present: nothing
	}
	return t.pr.Apply(p, linkMap(now), changed)
}

// linkMap is the tests' Links: the links by ifindex.
type linkMap map[uint32]Link

func (m linkMap) Link(index uint32) (Link, bool) {
	l, ok := m[index]
	return l, ok
}

func (m linkMap) Each(f func(Link)) {
	for _, l := range m {
		f(l)
	}
}

func indexLinks(links []Link) linkMap {
	m := make(linkMap, len(links))
	for _, l := range links {
		m[l.Index] = l
	}
	return m
}

// TestPortFactsDerivePort: what a Planner keeps of a port (portState) is
// all derivePort reads of it, or a changed port's old targets would be
// derived wrong.
func TestPortFactsDerivePort(t *testing.T) {
	for seed := range 200 {
		r := rand.New(rand.NewPCG(uint64(seed), 0xfac7))
		w := &world{r: r, p: randomProfile(r), next: 1}
		for range 10 {
			l := w.port()
			l.Master, l.ParentIndex, l.VLANID, l.Kind, l.Enslaved, l.VLANFiltering, l.DefaultPVID = 3, 4, 5, "veth", true, true, 7
			l.Driver, l.BridgeVLANs = []string{"", "e1000e"}[r.IntN(2)], []kernel.BridgeVLAN{{VID: 9}}
			want, wok := derivePort(w.p, l)
			got, gok := derivePort(w.p, portOf(l, want).link(l.Index))
			if wok != gok || !reflect.DeepEqual(got, want) {
				t.Fatalf("seed %d: %+v derives %+v (%v) from its portState, %+v (%v) from itself", seed, l, got, gok, want, wok)
			}
		}
	}
}
