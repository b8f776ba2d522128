package ifmgr

import (
	"net"
	"slices"
	"strings"

	"github.com/uroute/uroute/ifmgr/kernel"
)

// linkTable is ifmgr's picture of the kernel's links: the last state read
// of each, by ifindex and by name, and the sysfs facts of the ones that are
// candidates for ports. It belongs to the owner goroutine, and its methods
// are the only code that changes it. Invariants (checkLinkTable in the
// tests):
//
//   - byName[n] == i  =>  byIndex[i].Name == n: a name leads to the link
//     that has it. The converse can fail for a moment: when the kernel
//     gives a name to a new link before ifmgr hears that the old holder
//     was renamed or deleted, both are cached and the name leads to the one
//     observed last; the event or resync that follows settles it.
//   - facts and address texts (kept in byIndex with each link) go with
//     the link when it is forgotten or renamed (a renamed ifindex is
//     re-read).
//   - enslaved[i] != 0: ifmgr put link i into bridge enslaved[i] (by a
//     join, or found it there by a rule of the profile). It outlives a
//     forget (a re-read) and goes with the link (gone, replace).
//   - vlans[i] is link i's bridge VLAN membership as last read (a port's,
//     or a bridge's own side): ascending VID, one entry per VID, never
//     empty (no entry: no key). It is replaced whole by a dump
//     (setVLANs), changed entry by entry only by ifmgr's own successful
//     adds and deletes (addVLAN, delVLAN), emptied when ifmgr moves the
//     link to another bridge (the kernel drops a leaving port's entries),
//     outlives a forget and goes with the link (gone, replace).
type linkTable struct {
	byIndex  linkSet
	byName   map[string]uint32
	enslaved map[uint32]uint32
	vlans    map[uint32][]kernel.BridgeVLAN
	// changed: the ifindexes whose link, enslavement or membership changed
	// in what the planner reads since it last asked (takeChanged); all: the
	// whole table was replaced (a resync), so every link may have. The
	// planner keeps no copy of the links to tell a change from a repeat: a
	// link observed again as it was (an echo, a carrier flap) is not marked.
	changed map[uint32]bool
	all     bool
}

// linkFacts is what sysfs says of a link, for port matching. A device's
// driver and bus do not change under its ifindex: read once per link.
type linkFacts struct{ driver, bus string }

// macText is a link's addresses as the planner reads them, lower-case
// text: every convergence describes every link to the planner, and
// formatting 800 pairs of addresses each time was a third of ifmgrd's CPU
// per event (and the same string each time also makes the planner's
// comparison of a link with its last observation a pointer check). Whether
// the link's addresses are still these is read off the text itself
// (sameMAC): no copy of the bytes is kept.
type macText struct{ mac, perm string }

func newLinkTable() linkTable {
	return linkTable{byIndex: newLinkSet(0), byName: map[string]uint32{},
		enslaved: map[uint32]uint32{}, vlans: map[uint32][]kernel.BridgeVLAN{}, changed: map[uint32]bool{}}
}

// takeChanged returns the ifindexes changed since the last call (all: any
// may have), and forgets them.
func (t *linkTable) takeChanged() (changed map[uint32]bool, all bool) {
	changed, all = t.changed, t.all
	t.changed, t.all = map[uint32]bool{}, false
	return changed, all
}

// get returns the link with ifindex index.
func (t *linkTable) get(index uint32) (kernel.Link, bool) {
	l, ok := t.byIndex.get(index)
	return l, ok && index != 0
}

// named returns the link named name.
func (t *linkTable) named(name string) (kernel.Link, bool) {
	i, ok := t.byName[name]
	if !ok {
		return kernel.Link{}, false
	}
	l, _ := t.byIndex.get(i)
	return l, true
}

func (t *linkTable) len() int { return t.byIndex.len() }

// each calls f with every link, in no particular order. f must not change
// the table.
func (t *linkTable) each(f func(kernel.Link)) {
	for i := range t.byIndex.rows {
		f(t.byIndex.rows[i].link)
	}
}

// names calls f with every name the table leads to.
func (t *linkTable) names(f func(string)) {
	for n := range t.byName {
		f(n)
	}
}

// observe records what the kernel just said of a link.
func (t *linkTable) observe(l kernel.Link) {
	old, ok := t.byIndex.get(l.Index)
	if ok && old.Name != l.Name {
		t.forget(l.Index)
	} else if ok {
		keepOld(&l, old)
	}
	t.byIndex.put(l)
	t.byName[l.Name] = l.Index
	if !ok || plannerDiffers(old, l) {
		t.changed[l.Index] = true
	}
}

// plannerDiffers reports whether two observations of a link differ in
// anything the planner reads of it (planLink): every field but the alias,
// the operational state and the flags other than IFF_UP. Written as what
// it leaves out, so that a field added to kernel.Link counts as read until
// said otherwise (TestPlannerDiffersCoversPlanLink).
func plannerDiffers(a, b kernel.Link) bool {
	a.Alias, a.Oper, a.Flags = "", 0, a.Flags&iffUp
	b.Alias, b.Oper, b.Flags = "", 0, b.Flags&iffUp
	return !a.Equal(b)
}

// keepOld makes l, a new observation of link old, share old's strings and
// addresses where they are the same. A link is observed again and again
// (every echo, event and dump), each time freshly decoded: keeping the copy
// the table already holds leaves the new one garbage at once, instead of
// moving the table's long-lived strings, one per observation, into spans
// the bring-up's garbage shares (which Go does not compact: half-empty
// spans stay in the RSS). It also makes the planner's comparisons of
// equal strings pointer checks.
func keepOld(l *kernel.Link, old kernel.Link) {
	l.Name = old.Name // the caller checked they are equal
	if l.Alias == old.Alias {
		l.Alias = old.Alias
	}
	if l.Kind == old.Kind {
		l.Kind = old.Kind
	}
	if slices.Equal(l.MAC, old.MAC) && slices.Equal(l.PermMAC, old.PermMAC) {
		l.MAC, l.PermMAC = old.MAC, old.PermMAC
	}
}

// forget drops a link that is gone (or about to be re-read).
func (t *linkTable) forget(index uint32) {
	l, ok := t.byIndex.get(index)
	if !ok {
		return
	}
	t.byIndex.del(index)
	t.changed[index] = true
	if t.byName[l.Name] == index {
		delete(t.byName, l.Name)
	}
}

// replace swaps in a full dump. Facts of links still present are kept;
// those of links gone (whose events were lost) are dropped, so they cannot
// pile up for years.
func (t *linkTable) replace(links []kernel.Link) {
	t.all = true
	old := t.byIndex
	t.byIndex = newLinkSet(len(links))
	t.byName = make(map[string]uint32, len(links))
	for _, l := range links {
		o := old.row(l.Index)
		if o != nil && o.link.Name == l.Name {
			keepOld(&l, o.link)
		}
		t.observe(l)
		if o != nil {
			r := t.byIndex.row(l.Index)
			r.facts, r.haveFacts, r.macs, r.haveMACs = o.facts, o.haveFacts, o.macs, o.haveMACs
		}
	}
	for idx := range t.enslaved {
		if !t.byIndex.has(idx) {
			delete(t.enslaved, idx)
		}
	}
	for idx := range t.vlans {
		if !t.byIndex.has(idx) {
			delete(t.vlans, idx)
		}
	}
}

// gone drops a link the kernel no longer has.
func (t *linkTable) gone(index uint32) {
	t.changed[index] = true
	t.forget(index)
	delete(t.enslaved, index)
	delete(t.vlans, index)
}

// markUp records a successful set-up without waiting for the event.
func (t *linkTable) markUp(index uint32) {
	if l := t.byIndex.ref(index); l != nil {
		l.Flags |= iffUp
		t.changed[index] = true
	}
}

// setAlias records a successful set-alias without waiting for the event,
// so that the event, when it comes, matches the table and needs no
// read-back (handleEvents). The planner does not read aliases: not a
// change for it.
func (t *linkTable) setAlias(index uint32, alias string) {
	if l := t.byIndex.ref(index); l != nil {
		l.Alias = alias
	}
}

// setMaster records a successful set-master (ifmgr's own, so the link
// counts as enslaved by ifmgr) without waiting for the event.
func (t *linkTable) setMaster(index, master uint32) {
	if l := t.byIndex.ref(index); l != nil {
		if l.Master != master {
			delete(t.vlans, index) // the kernel flushed them as it left
		}
		l.Master = master
		t.changed[index] = true
	}
	t.markEnslaved(index, master)
}

// setOptions records a successful SetBridgeOptions without waiting for
// the event.
func (t *linkTable) setOptions(index uint32, opt kernel.BridgeOptions) {
	if l := t.byIndex.ref(index); l != nil {
		l.VLANFiltering, l.DefaultPVID = opt.VLANFiltering, opt.DefaultPVID
		t.changed[index] = true
	}
}

// vlansOf returns link index's bridge VLAN membership as last read. The
// caller must not change it.
func (t *linkTable) vlansOf(index uint32) []kernel.BridgeVLAN { return t.vlans[index] }

// setVLANs swaps in a dump of every link's membership (kernel.BridgeVLANs).
func (t *linkTable) setVLANs(dump map[uint32][]kernel.BridgeVLAN) {
	old := t.vlans
	t.vlans = make(map[uint32][]kernel.BridgeVLAN, len(dump))
	for idx, vs := range dump {
		for _, v := range vs {
			t.putVLAN(idx, v)
		}
	}
	// Only the links whose membership differs count as changed: a filtering
	// bridge's every join sends membership news, and the dump is all of it.
	for idx, vs := range old {
		if !slices.Equal(vs, t.vlans[idx]) {
			t.changed[idx] = true
		}
	}
	for idx := range t.vlans {
		if _, ok := old[idx]; !ok {
			t.changed[idx] = true
		}
	}
}

// addVLAN records one entry (ifmgr's successful add, or a dump's): an
// entry of the same VID is replaced, as the kernel updates its flags.
func (t *linkTable) addVLAN(index uint32, v kernel.BridgeVLAN) {
	t.putVLAN(index, v)
	t.changed[index] = true
}

func (t *linkTable) putVLAN(index uint32, v kernel.BridgeVLAN) {
	vs := t.vlans[index]
	i, found := slices.BinarySearchFunc(vs, v.VID, func(e kernel.BridgeVLAN, vid uint16) int { return int(e.VID) - int(vid) })
	if found {
		vs = slices.Clone(vs) // a planner may still hold the old slice
		vs[i] = v
	} else {
		vs = slices.Insert(slices.Clone(vs), i, v)
	}
	t.vlans[index] = vs
}

// delVLAN records ifmgr's successful delete of one entry.
func (t *linkTable) delVLAN(index uint32, vid uint16) {
	vs := t.vlans[index]
	i, found := slices.BinarySearchFunc(vs, vid, func(e kernel.BridgeVLAN, vid uint16) int { return int(e.VID) - int(vid) })
	if !found {
		return
	}
	t.changed[index] = true
	if len(vs) == 1 {
		delete(t.vlans, index)
		return
	}
	t.vlans[index] = slices.Delete(slices.Clone(vs), i, i+1)
}

// markEnslaved records that ifmgr put link index into bridge master (0:
// took it out).
func (t *linkTable) markEnslaved(index, master uint32) {
	if t.enslaved[index] != master {
		t.changed[index] = true
	}
	if master == 0 {
		delete(t.enslaved, index)
		return
	}
	t.enslaved[index] = master
}

// isEnslaved reports whether ifmgr put l into the bridge it is in now.
func (t *linkTable) isEnslaved(l kernel.Link) bool {
	return l.Master != 0 && t.enslaved[l.Index] == l.Master
}

// factsOf returns a link's sysfs facts, reading them (with read) the first
// time they are asked for.
func (t *linkTable) factsOf(l kernel.Link, read func(ifname string) (driver, bus string)) linkFacts {
	r := t.byIndex.row(l.Index)
	if r != nil && r.haveFacts {
		return r.facts
	}
	var f linkFacts
	f.driver, f.bus = read(l.Name)
	if r != nil {
		r.facts, r.haveFacts = f, true
	}
	return f
}

// macsOf returns a link's current and permanent addresses as lower-case
// text, formatting them only when they changed.
func (t *linkTable) macsOf(l kernel.Link) (mac, perm string) {
	r := t.byIndex.row(l.Index)
	if r != nil && r.haveMACs && sameMAC(r.macs.mac, l.MAC) && sameMAC(r.macs.perm, l.PermMAC) {
		return r.macs.mac, r.macs.perm
	}
	c := macText{mac: strings.ToLower(l.MAC.String()), perm: strings.ToLower(l.PermMAC.String())}
	if r != nil {
		r.macs, r.haveMACs = c, true
	}
	return c.mac, c.perm
}

// sameMAC reports whether text is what strings.ToLower(addr.String())
// gives, without formatting addr.
func sameMAC(text string, addr net.HardwareAddr) bool {
	const hex = "0123456789abcdef"
	if len(addr) == 0 {
		return text == ""
	}
	if len(text) != 3*len(addr)-1 {
		return false
	}
	for i, b := range addr {
		if i > 0 && text[3*i-1] != ':' {
			return false
		}
		if text[3*i] != hex[b>>4] || text[3*i+1] != hex[b&0xf] {
			return false
		}
	}
	return true
}

// linkSet holds links by ifindex, each with what the table knows of it
// besides (linkRow), in one dense slice, and a map from ifindex to
// position. A map of Links stores each out of line (Go's maps do for values
// over 128 bytes), or inline in slots of which a growing map leaves up to
// half empty: either way about twice the links' own size at thousands of
// links, and as many small objects; the facts and address texts had maps
// of their own.
type linkSet struct {
	rows []linkRow
	pos  map[uint32]int32
}

// linkRow is one link of a linkSet, its sysfs facts and its address texts
// (have*: known; they are read or formatted when first asked for).
type linkRow struct {
	link                kernel.Link
	facts               linkFacts
	macs                macText
	haveFacts, haveMACs bool
}

func newLinkSet(n int) linkSet {
	return linkSet{rows: make([]linkRow, 0, n), pos: make(map[uint32]int32, n)}
}

func (s *linkSet) len() int { return len(s.rows) }

func (s *linkSet) get(index uint32) (kernel.Link, bool) {
	if p, ok := s.pos[index]; ok {
		return s.rows[p].link, true
	}
	return kernel.Link{}, false
}

func (s *linkSet) has(index uint32) bool {
	_, ok := s.pos[index]
	return ok
}

// row returns the row of ifindex index to change in place (nil if none),
// valid until the next put or del.
func (s *linkSet) row(index uint32) *linkRow {
	if p, ok := s.pos[index]; ok {
		return &s.rows[p]
	}
	return nil
}

// ref returns the stored link with ifindex index to change in place (nil
// if none), valid until the next put or del.
func (s *linkSet) ref(index uint32) *kernel.Link {
	if r := s.row(index); r != nil {
		return &r.link
	}
	return nil
}

// put stores l, replacing the link of its ifindex (what else its row
// holds stays).
func (s *linkSet) put(l kernel.Link) {
	if p, ok := s.pos[l.Index]; ok {
		s.rows[p].link = l
		return
	}
	s.pos[l.Index] = int32(len(s.rows))
	s.rows = append(s.rows, linkRow{link: l})
}

// del removes the row of ifindex index; the last row takes its place.
func (s *linkSet) del(index uint32) {
	p, ok := s.pos[index]
	if !ok {
		return
	}
	last := int32(len(s.rows) - 1)
	if p != last {
		s.rows[p] = s.rows[last]
		s.pos[s.rows[p].link.Index] = p
	}
	s.rows[last] = linkRow{} // drop its strings
	s.rows = s.rows[:last]
	delete(s.pos, index)
}
