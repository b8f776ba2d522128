package ifmgr

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
	"github.com/uroute/uroute/persist"
)

// txn gathers the record changes of one step so they commit together.
type txn struct {
	puts []persist.Record
	dels []persist.RecordKey
}

func (t *txn) empty() bool { return len(t.puts) == 0 && len(t.dels) == 0 }

// commit writes t in one durable transaction and empties it. A failure is
// logged here, with why, and returned: every caller decides what it means
// for the work that depended on it.
func (m *Manager) commit(t *txn, why string) error {
	if t.empty() {
		return nil
	}
	if err := m.cfg.Store.Apply(t.puts, t.dels); err != nil {
		m.log.Error("DB commit failed", "why", why, "puts", len(t.puts), "dels", len(t.dels), "err", err)
		return err
	}
	*t = txn{}
	return nil
}

// resync re-reads every link and settles every name the kernel, the records
// or the held set mention. It is the one mechanism behind startup, lost
// events and the periodic safety net. A dump that fails (interrupted again
// and again while links churn) is tried again soon (redumpTimer): the
// events it stood for are gone, and after a storm no other event may come
// before the periodic resync, minutes later.
func (m *Manager) resync(reason string) error {
	links, err := m.cfg.Kernel.Links()
	if err != nil {
		delay := m.redump.failed(reason)
		m.log.Error("link dump failed; trying again", "reason", reason, "in", delay, "err", err)
		return err
	}
	m.redump.succeeded()
	m.resyncs[reason]++
	names := map[string]bool{}
	m.links.names(func(n string) { names[n] = true })
	m.entries.each(func(e *entry) { names[e.name()] = true })
	m.links.replace(links)
	m.attachRenamed(links)
	m.readBridgeVLANs(m.profile, reason)
	for _, l := range links {
		names[l.Name] = true
	}
	for _, c := range m.cloners {
		m.alloc[c.Name].EachHeld(func(u uint32) bool {
			names[c.IfName(u)] = true
			return true
		})
	}
	var t txn
	drift := 0
	for name := range names {
		if m.settle(name, &t) {
			drift++
		}
	}
	if drift > 0 && reason != "startup" {
		m.log.Warn("resync found drift", "reason", reason, "names", drift)
	}
	m.log.Info("resync", "reason", reason, "links", len(links), "managed", m.entries.len(), "drift", drift)
	err = m.commit(&t, "resync "+reason)
	if reason == "requested" {
		m.refused.expedite() // an operator's resync tries everything now
	}
	m.converge("resync " + reason)
	return err
}

// dumpOver: a burst of events touching more links than this (and more than
// a quarter of all) is re-read with one dump instead of a get per link.
const dumpOver = 32

// handleEvents treats events as hints: each named ifindex is re-read from the
// kernel, and only the names it had or has now are settled. A link whose
// last event in the burst says exactly what the link table holds is not
// re-read: that event is the kernel's state when it was sent, every change
// after it has an event still to come, and the table already agrees with
// it, so a read could show nothing the queue will not. That is the echo of
// ifmgr's own work, whose acks the applier records in the table (a bulk
// bring-up's thousands of events). A link the table does not explain (a
// foreign change, or an event older than what the applier recorded since)
// is re-read.
func (m *Manager) handleEvents(evs []kernel.Event) {
	last := map[uint32]kernel.Event{}
	names := map[string]bool{}
	vlanNews := false
	for _, ev := range evs {
		if ev.Type == kernel.EventResync {
			m.resync("lost-events")
			return
		}
		if ev.Type == kernel.EventVLAN {
			// Membership, not link state: its Link may be sparse. One dump
			// after the burst re-reads every entry.
			vlanNews = true
			continue
		}
		last[ev.Link.Index] = ev
		names[ev.Link.Name] = true // a hint too: settle it whatever the kernel says now
	}
	if len(last) == 0 && !filters(m.profile) {
		// Only membership news (every port join and leave sends one),
		// and no membership is ifmgr's business: nothing to converge.
		return
	}
	var order []uint32
	for _, idx := range slices.Sorted(maps.Keys(last)) {
		if ev := last[idx]; ev.Type == kernel.EventNew {
			if have, ok := m.links.get(idx); ok && have.Equal(ev.Link) {
				continue
			}
		}
		order = append(order, idx)
	}
	// Re-read the rest: one get per link, or, when a burst touches a good
	// part of the links, one dump, a single request however many links it
	// returns.
	var dumped map[uint32]kernel.Link
	if len(order) > max(dumpOver, m.links.len()/4) {
		links, err := m.cfg.Kernel.Links()
		if err != nil {
			m.log.Warn("re-reading links after events failed; resyncing", "links", len(order), "err", err)
			m.resync("event-read-failed")
			return
		}
		dumped = make(map[uint32]kernel.Link, len(links))
		for _, l := range links {
			dumped[l.Index] = l
		}
	}
	var got []kernel.Result
	if dumped == nil && len(order) > 0 {
		// One get per link, pipelined: a burst costs one datagram each way
		// instead of a round trip per link.
		gets := make([]kernel.Op, len(order))
		for i, idx := range order {
			gets[i] = kernel.GetLinkOp(idx)
		}
		got = m.cfg.Kernel.Batch(gets)
	}
	for i, idx := range order {
		if e := m.entries.onLink(idx); e != nil {
			names[e.name()] = true // its link may have been renamed from outside
		}
		if old, ok := m.links.get(idx); ok {
			names[old.Name] = true
			m.links.forget(idx)
		}
		var l kernel.Link
		var err error
		if dumped != nil {
			var ok bool
			if l, ok = dumped[idx]; !ok {
				err = kernel.ErrNotFound
			}
		} else {
			l, err = got[i].Link, got[i].Err
		}
		switch {
		case errors.Is(err, kernel.ErrNotFound):
			m.links.gone(idx)
			continue
		case err != nil:
			m.log.Warn("re-reading a link after an event failed; resyncing", "ifindex", idx, "err", err)
			m.resync("event-read-failed")
			return
		}
		m.links.observe(l)
		names[l.Name] = true
	}
	if vlanNews {
		m.readBridgeVLANs(m.profile, "vlan events")
	}
	var t txn
	for name := range names {
		m.settle(name, &t)
	}
	// A failed commit is logged by commit; the memory state is already
	// right, and the records it would have fixed are fixed again by the
	// next startup's settle, which reads the same kernel.
	_ = m.commit(&t, "link events")
	m.converge(convergeEvents)
}

// readBridgeVLANs re-reads the bridge VLAN membership of every port and
// bridge, when profile p has a filtering bridge (otherwise ifmgr manages
// no membership and has no reason to ask). Entries are state like links:
// a change behind ifmgr's back (an EventVLAN, a resync) is read back here
// and repaired by the convergence that follows. A failed dump keeps the
// last one: the next event or resync reads again.
func (m *Manager) readBridgeVLANs(p *board.Profile, why string) {
	if !filters(p) {
		return
	}
	dump, err := m.cfg.Kernel.BridgeVLANs()
	if err != nil {
		m.log.Warn("reading bridge VLAN membership failed; keeping the last read", "trigger", why, "err", err)
		return
	}
	m.links.setVLANs(dump)
}

// filters reports whether profile p has a VLAN-filtering bridge.
func filters(p *board.Profile) bool {
	if p == nil {
		return false
	}
	for _, b := range p.Bridges {
		if b.VLANFiltering {
			return true
		}
	}
	return false
}

// owned is the kernel-only test of ownership: the marker group, set
// atomically when ifmgr created the link, and the cloner's kind.
func (m *Manager) owned(l kernel.Link, c *Cloner) bool {
	return l.Group == m.cfg.OwnerGroup && l.Kind == c.Kind
}

// cloneOf finds the cloner and in-range unit a name holds.
func (m *Manager) cloneOf(name string) (*Cloner, uint32, bool) {
	for _, c := range m.cloners {
		if u, ok := c.unitOf(name); ok {
			return c, u, true
		}
	}
	return nil, 0, false
}

// settle makes ifmgr's view of one name agree with the kernel: an owned link
// is managed (adopted if its record was lost), a foreign link holds its unit
// (skipped, not leaked), and a name nobody has any more frees the unit. It
// reports whether anything had to change.
func (m *Manager) settle(name string, t *txn) bool {
	c, u, ok := m.cloneOf(name)
	if !ok {
		return false
	}
	a := m.alloc[c.Name]
	l, present := m.links.named(name)
	e := m.entries.named(name)
	changed := false

	if present && m.owned(l, c) {
		if o := m.entries.onLink(l.Index); o != nil && o != e {
			// Another entry's link, renamed from outside into this
			// name: it stays that entry's (see renamedAway). Its new
			// name is taken in the kernel, so the unit must not be
			// handed out: held as for a foreign link.
			changed = m.renamedAway(o, l)
			if _, ok := m.renamedLink(e); e != nil && !ok {
				changed = m.vanished(e, name, t) || changed
			}
			if m.entries.named(name) == nil && !a.IsHeld(u) { // none, or just dropped
				if err := a.Hold(u); err != nil {
					m.log.Error("cannot mark unit held", "name", name, "err", err)
				}
				changed = true
			}
			return changed
		}
	}
	switch {
	case present && m.owned(l, c):
		if m.entries.markRenamed(e, "") {
			m.log.Info("renamed back to its own name", "name", name, "ifindex", l.Index)
			changed = true
		}
		if a.IsHeld(u) {
			a.Release(u)
			changed = true
		}
		if e == nil {
			rec := persist.Record{Cloner: c.Name, Unit: u, Identity: identityFromAlias(l.Alias, name)}
			if l.Kind == kernel.KindVLAN {
				rec.VID = l.VLANID
				if p, ok := m.links.get(l.IfLink); ok {
					rec.ParentName = p.Name
				}
			}
			if err := a.Alloc(u); err != nil {
				m.log.Error("cannot adopt own link", "name", name, "err", err)
				return changed
			}
			if other := m.entries.withIdentity(rec.Identity.Key()); other != nil {
				m.log.Warn("two links claim one identity; the second is kept under its own name", "name", name, "identity", rec.Identity.Key(), "other", other.name())
				rec.Identity = persist.Identity{Name: name}
			}
			e = &entry{rec: rec, cloner: c}
			m.entries.add(e)
			t.puts = append(t.puts, rec)
			m.log.Info("adopted own link without a record", "name", name, "identity", rec.Identity.Key())
			changed = true
		}
		m.entries.attach(e, l.Index)
		if !strings.HasPrefix(l.Alias, aliasPrefix) {
			// The crash fell between the create and its follow-ups:
			// the link was made down and never got its alias nor its
			// up (createLinks sends the two in one datagram).
			m.setAlias(l.Index, e.rec.Identity)
			if l.Flags&iffUp == 0 {
				m.finishUp(l)
			}
		}
	case present:
		if r, renamed := m.renamedLink(e); renamed {
			// Its link lives on under another name and keeps the unit
			// allocated; the foreign link holds the name meanwhile.
			return m.renamedAway(e, r) || changed
		}
		if e != nil {
			m.drop(e, t, "name now held by a foreign interface")
			changed = true
		}
		if !a.IsHeld(u) {
			if err := a.Hold(u); err != nil {
				m.log.Error("cannot mark unit held", "name", name, "err", err)
			}
			m.log.Info("unit held by a foreign interface", "name", name, "ifindex", l.Index)
			changed = true
		}
	default:
		if a.IsHeld(u) {
			a.Release(u)
			m.log.Info("foreign interface gone; unit allocatable again", "name", name)
			changed = true
		}
		if r, renamed := m.renamedLink(e); renamed {
			return m.renamedAway(e, r) || changed
		}
		changed = m.vanished(e, name, t) || changed
	}
	return changed
}

// renamedLink returns e's link if another process renamed it: it still
// exists, still carries the owner marker and the cloner's kind, under a
// name that is not e's.
func (m *Manager) renamedLink(e *entry) (kernel.Link, bool) {
	if e == nil || e.index == 0 {
		return kernel.Link{}, false
	}
	l, ok := m.links.get(e.index)
	if !ok || !m.owned(l, e.cloner) || l.Name == e.name() {
		return kernel.Link{}, false
	}
	return l, true
}

// renamedAway keeps e for its link l, which another process renamed, and
// logs that once per new name. Why adopt rather than forget or rename back:
// the link still serves e's identity (its alias says which; ports, VLANs
// and addresses stay on it), so forgetting it would hand e's unit out again
// and a profile would make a second link for the same identity, both
// marked as ifmgr's; renaming it back needs the link down (the kernel
// answers EBUSY for a running link), which would cut the LAN off to undo a
// cosmetic change. So the record and the unit stay reserved while the
// link exists under any name, list and status show its current name, and
// when it is deleted or renamed back settle converges as for any other
// link (docs/design.md, "Renamed from outside").
func (m *Manager) renamedAway(e *entry, l kernel.Link) bool {
	if !m.entries.markRenamed(e, l.Name) {
		return false
	}
	m.log.Warn(e.name()+" renamed from outside to "+l.Name+"; unit "+fmt.Sprint(e.rec.Unit)+" stays reserved",
		"name", e.name(), "now", l.Name, "ifindex", l.Index, "identity", e.rec.Identity.Key())
	return true
}

// vanished settles an entry whose link is gone: a reservation of the
// profile's keeps its unit for the hardware's return, anything else is
// dropped.
func (m *Manager) vanished(e *entry, name string, t *txn) bool {
	switch {
	case e == nil:
		return false
	case plan.Derived(e.rec.Identity):
		// A reservation: the hardware may come back and must get the
		// same unit without a DB write.
		if e.index == 0 {
			return false
		}
		// ifmgr detaches what it deletes itself before the event, and a
		// VLAN goes with its port (an unplug) by itself.
		if _, parentHere := m.links.named(e.rec.ParentName); e.rec.VID == 0 || parentHere {
			m.log.Warn("deleted from outside", "name", name, "ifindex", e.index, "identity", e.rec.Identity.Key())
		}
		m.entries.detach(e)
		return true
	default:
		m.drop(e, t, "interface vanished")
		return true
	}
}

// attachRenamed finds, after a full dump, the links of entries that
// another process renamed while ifmgr was not looking (before a restart,
// or with events lost): an owned link whose alias names an entry's
// identity but not the entry's name. It is attached to that entry, unless
// the entry's own name has an owned link of the same identity (then the
// renamed one is a second link for one identity, which ifmgr does not
// manage: logged). The entry's name may have another entry's renamed link.
func (m *Manager) attachRenamed(links []kernel.Link) {
	for _, l := range links {
		if l.Group != m.cfg.OwnerGroup {
			continue
		}
		id, ok := persist.IdentityFromAlias(l.Alias)
		if !ok {
			continue
		}
		e := m.entries.withIdentity(id.Key())
		if e == nil || e.cloner.Kind != l.Kind || e.name() == l.Name || e.index == l.Index {
			continue
		}
		if own, ok := m.links.named(e.name()); ok && m.owned(own, e.cloner) && identityFromAlias(own.Alias, own.Name).Key() == id.Key() {
			m.log.Warn("two owned links claim one identity; the one under another name is not managed", "name", e.name(), "other", l.Name, "identity", id.Key())
			continue
		}
		if _, renamed := m.renamedLink(e); renamed {
			continue // already on a renamed link
		}
		m.entries.attach(e, l.Index)
	}
}

// drop forgets a managed interface: its entry, its unit and (in t) its
// record.
func (m *Manager) drop(e *entry, t *txn, why string) {
	m.release(e, t)
	m.log.Info("record dropped", "name", e.name(), "why", why)
}

// release takes e out of the entry table, frees its unit and queues the
// deletion of its record: the one way a committed allocation ends.
func (m *Manager) release(e *entry, t *txn) {
	m.unallocate(e)
	t.dels = append(t.dels, e.rec.Key())
}

// unallocate takes e out of the entry table and frees its unit, for an
// allocation whose record never committed (or whose deletion release
// queues).
func (m *Manager) unallocate(e *entry) {
	m.entries.remove(e)
	if err := m.alloc[e.cloner.Name].Free(e.rec.Unit); err != nil {
		m.log.Error("free unit", "name", e.name(), "err", err)
	}
}

// finishUp sets up a link of ours that a crash left down before its
// follow-ups; a VLAN whose parent is down cannot open (ENETDOWN) and stays
// down, logged.
func (m *Manager) finishUp(l kernel.Link) {
	if err := m.cfg.Kernel.SetUp(l.Index, true); err != nil {
		m.log.Warn("bring up own link left down by a crash before its alias", "name", l.Name, "err", err)
		return
	}
	m.links.markUp(l.Index)
}

func (m *Manager) setAlias(index uint32, id persist.Identity) {
	if err := m.cfg.Kernel.SetAlias(index, id.Alias()); err != nil {
		m.log.Warn("set ownership alias", "ifindex", index, "err", err)
		return
	}
	m.links.setAlias(index, id.Alias())
}

// identityFromAlias recovers the identity ifmgr wrote on its own link; if the
// alias is missing or damaged, the name itself is the identity.
func identityFromAlias(alias, name string) persist.Identity {
	if id, ok := persist.IdentityFromAlias(alias); ok {
		return id
	}
	return persist.Identity{Name: name}
}

// redumpTimer schedules the next try of a failed resync: 100 ms, doubling
// to at most 5 s while dumps keep failing, reset by a dump that succeeds
// (whatever asked for it). The owner loop waits on timer.
type redumpTimer struct {
	timer  *time.Timer
	delay  time.Duration // the last delay armed; 0 when no retry is due
	reason string        // the failed resync's reason, kept for its retry
}

const (
	redumpMin = 100 * time.Millisecond
	redumpMax = 5 * time.Second
)

func newRedumpTimer() redumpTimer {
	t := time.NewTimer(time.Hour)
	t.Stop()
	return redumpTimer{timer: t}
}

// failed arms the next try and returns its delay.
func (r *redumpTimer) failed(reason string) time.Duration {
	r.delay = min(max(2*r.delay, redumpMin), redumpMax)
	r.reason = reason
	r.timer.Reset(r.delay)
	return r.delay
}

// succeeded disarms it.
func (r *redumpTimer) succeeded() {
	if r.delay != 0 {
		r.timer.Stop()
		r.delay, r.reason = 0, ""
	}
}
