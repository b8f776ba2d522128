package ifmgr

import (
	"github.com/uroute/uroute/persist"
)

// entry is one managed interface: its committed record, the cloner that
// names it, and the ifindex of its kernel link (0 while there is none). The
// fields that place an entry in the entryTable (rec.Cloner, rec.Unit,
// rec.Identity, index) are changed only by entryTable's methods.
type entry struct {
	rec    persist.Record
	cloner *Cloner
	index  uint32
	// renamedTo is the name another process gave the entry's link ("" while
	// it has the name its unit renders): the entry keeps its unit for it
	// (see settle). Changed only by entryTable's methods.
	renamedTo string
}

// name is the interface name the entry's unit renders.
func (e *entry) name() string { return e.cloner.IfName(e.rec.Unit) }

// entryTable holds the managed interfaces, by name, by identity and by the
// ifindex of their link. It belongs to the owner goroutine, and its methods
// are the only code that changes it. Invariants (checkEntryTable in the
// tests):
//
//   - byName[e.name()] == e for every entry: names are unique (they are the
//     allocator's units).
//   - byIdentity[k] is an entry of the table whose key is k, and every
//     entry's key is in byIdentity. Two entries may share a key only if a
//     damaged DB says so; the table then leads to one of them and counts the
//     other in shadowed, and removing the one it leads to brings the other
//     forward.
//   - byIndex[i] == e  <=>  e.index == i != 0: one entry per link.
//   - e.renamedTo != ""  =>  e.index != 0: only a link can be renamed; a
//     detach or an attach to another link clears it.
type entryTable struct {
	byName     map[string]*entry
	byIdentity map[string]*entry
	byIndex    map[uint32]*entry
	shadowed   int // entries whose key leads to another entry
	// relinked: the ifindexes whose entry changed (attached, detached,
	// rekeyed) since the planner last asked (takeRelinked): what it reads
	// of a link includes its entry's identity.
	relinked map[uint32]bool
}

func newEntryTable() entryTable {
	return entryTable{byName: map[string]*entry{}, byIdentity: map[string]*entry{}, byIndex: map[uint32]*entry{}, relinked: map[uint32]bool{}}
}

// takeRelinked returns the ifindexes whose entry changed since the last
// call, and forgets them.
func (t *entryTable) takeRelinked() map[uint32]bool {
	r := t.relinked
	t.relinked = map[uint32]bool{}
	return r
}

func (t *entryTable) len() int { return len(t.byName) }

func (t *entryTable) named(name string) *entry { return t.byName[name] }

func (t *entryTable) withIdentity(key string) *entry { return t.byIdentity[key] }

// onLink returns the entry whose kernel link has ifindex index.
func (t *entryTable) onLink(index uint32) *entry {
	if index == 0 {
		return nil
	}
	return t.byIndex[index]
}

// each calls f with every entry, in no particular order. f must not add or
// remove entries.
func (t *entryTable) each(f func(*entry)) {
	for _, e := range t.byName {
		f(e)
	}
}

// add puts a new entry in the table; an entry already under its name is
// replaced (removed first).
func (t *entryTable) add(e *entry) {
	if old := t.byName[e.name()]; old != nil {
		t.remove(old)
	}
	t.byName[e.name()] = e
	if e.index != 0 {
		t.attachIndex(e, e.index)
	}
	key := e.rec.Identity.Key()
	if t.byIdentity[key] != nil {
		t.shadowed++
		return
	}
	t.byIdentity[key] = e
}

// remove takes an entry out of the table.
func (t *entryTable) remove(e *entry) {
	if t.byName[e.name()] != e {
		return
	}
	delete(t.byName, e.name())
	t.detach(e)
	key := e.rec.Identity.Key()
	if t.byIdentity[key] != e {
		t.shadowed--
		return
	}
	delete(t.byIdentity, key)
	if t.shadowed == 0 {
		return
	}
	for _, o := range t.byName {
		if o.rec.Identity.Key() == key {
			t.byIdentity[key] = o
			t.shadowed--
			return
		}
	}
}

// attach records that e's kernel link is index. Another entry that claimed
// the same ifindex (a stale one: the kernel reuses ifindexes only after
// wrapping) is detached.
func (t *entryTable) attach(e *entry, index uint32) {
	if t.byName[e.name()] != e || index == 0 {
		return
	}
	t.attachIndex(e, index)
}

func (t *entryTable) attachIndex(e *entry, index uint32) {
	t.relinked[e.index], t.relinked[index] = true, true
	if e.index != 0 && t.byIndex[e.index] == e {
		delete(t.byIndex, e.index)
	}
	if e.index != index {
		e.renamedTo = ""
	}
	if o := t.byIndex[index]; o != nil && o != e {
		o.index, o.renamedTo = 0, ""
	}
	e.index = index
	t.byIndex[index] = e
}

// detach records that e has no kernel link (any more).
func (t *entryTable) detach(e *entry) {
	t.relinked[e.index] = true
	if e.index != 0 && t.byIndex[e.index] == e {
		delete(t.byIndex, e.index)
	}
	e.index = 0
	e.renamedTo = ""
}

// markRenamed records the name another process gave e's link ("": it has
// its own name again) and reports whether that is news.
func (t *entryTable) markRenamed(e *entry, to string) bool {
	if e == nil || e.renamedTo == to || t.byName[e.name()] != e || (to != "" && e.index == 0) {
		return false
	}
	e.renamedTo = to
	return true
}

// stamp sets e's LastSeen (not an index field; through the table so that
// every change of an entry has one home).
func (t *entryTable) stamp(e *entry, clock uint64) { e.rec.LastSeen = clock }

// rekey gives e another identity, keeping its unit and its link: how a unit
// reserved under an identity older firmware derived passes to the identity
// this build derives for the same target (migrate.go).
func (t *entryTable) rekey(e *entry, id persist.Identity) {
	if t.byName[e.name()] != e {
		return
	}
	index := e.index
	t.remove(e)
	e.rec.Identity, e.index = id, index
	t.add(e)
}
