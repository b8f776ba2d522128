package ifmgr

import "github.com/uroute/uroute/ifmgr/kernel"

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
//   - facts only for indexes in byIndex, and dropped whenever the link is
//     forgotten or renamed (a renamed ifindex is re-read).
//   - enslaved[i] != 0: ifmgr put link i into bridge enslaved[i] (by a
//     join, or found it there by a rule of the profile). It outlives a
//     forget (a re-read) and goes with the link (gone, replace).
type linkTable struct {
	byIndex  map[uint32]kernel.Link
	byName   map[string]uint32
	facts    map[uint32]linkFacts
	enslaved map[uint32]uint32
}

// linkFacts is what sysfs says of a link, for port matching. A device's
// driver and bus do not change under its ifindex: read once per link.
type linkFacts struct{ driver, bus string }

func newLinkTable() linkTable {
	return linkTable{byIndex: map[uint32]kernel.Link{}, byName: map[string]uint32{}, facts: map[uint32]linkFacts{}, enslaved: map[uint32]uint32{}}
}

// get returns the link with ifindex index.
func (t *linkTable) get(index uint32) (kernel.Link, bool) {
	l, ok := t.byIndex[index]
	return l, ok && index != 0
}

// named returns the link named name.
func (t *linkTable) named(name string) (kernel.Link, bool) {
	i, ok := t.byName[name]
	if !ok {
		return kernel.Link{}, false
	}
	return t.byIndex[i], true
}

func (t *linkTable) len() int { return len(t.byIndex) }

// each calls f with every link, in no particular order. f must not change
// the table.
func (t *linkTable) each(f func(kernel.Link)) {
	for _, l := range t.byIndex {
		f(l)
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
	if old, ok := t.byIndex[l.Index]; ok && old.Name != l.Name {
		t.forget(l.Index)
	}
	t.byIndex[l.Index] = l
	t.byName[l.Name] = l.Index
}

// forget drops a link that is gone (or about to be re-read).
func (t *linkTable) forget(index uint32) {
	l, ok := t.byIndex[index]
	if !ok {
		return
	}
	delete(t.byIndex, index)
	delete(t.facts, index)
	if t.byName[l.Name] == index {
		delete(t.byName, l.Name)
	}
}

// replace swaps in a full dump. Facts of links still present are kept;
// those of links gone (whose events were lost) are dropped, so they cannot
// pile up for years.
func (t *linkTable) replace(links []kernel.Link) {
	t.byIndex = make(map[uint32]kernel.Link, len(links))
	t.byName = make(map[string]uint32, len(links))
	for _, l := range links {
		t.observe(l)
	}
	for idx := range t.facts {
		if _, ok := t.byIndex[idx]; !ok {
			delete(t.facts, idx)
		}
	}
	for idx := range t.enslaved {
		if _, ok := t.byIndex[idx]; !ok {
			delete(t.enslaved, idx)
		}
	}
}

// gone drops a link the kernel no longer has.
func (t *linkTable) gone(index uint32) {
	t.forget(index)
	delete(t.enslaved, index)
}

// markUp records a successful set-up without waiting for the event.
func (t *linkTable) markUp(index uint32) {
	if l, ok := t.byIndex[index]; ok {
		l.Flags |= iffUp
		t.byIndex[index] = l
	}
}

// setMaster records a successful set-master (ifmgr's own, so the link
// counts as enslaved by ifmgr) without waiting for the event.
func (t *linkTable) setMaster(index, master uint32) {
	if l, ok := t.byIndex[index]; ok {
		l.Master = master
		t.byIndex[index] = l
	}
	t.markEnslaved(index, master)
}

// markEnslaved records that ifmgr put link index into bridge master (0:
// took it out).
func (t *linkTable) markEnslaved(index, master uint32) {
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
	f, ok := t.facts[l.Index]
	if !ok {
		f.driver, f.bus = read(l.Name)
		if _, known := t.byIndex[l.Index]; known {
			t.facts[l.Index] = f
		}
	}
	return f
}
