package ifmgr

import (
	"encoding/json"
	"errors"
	"strings"

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
// events and the periodic safety net.
func (m *Manager) resync(reason string) error {
	links, err := m.cfg.Kernel.Links()
	if err != nil {
		m.log.Error("link dump failed", "reason", reason, "err", err)
		return err
	}
	m.resyncs[reason]++
	names := map[string]bool{}
	m.links.names(func(n string) { names[n] = true })
	m.entries.each(func(e *entry) { names[e.name()] = true })
	m.links.replace(links)
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
// kernel, and only the names it had or has now are settled.
func (m *Manager) handleEvents(evs []kernel.Event) {
	touched := map[uint32]bool{}
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
		touched[ev.Link.Index] = true
		names[ev.Link.Name] = true // a hint too: settle it whatever the kernel says now
	}
	if len(touched) == 0 && !filters(m.profile) {
		// Only membership news (every port join and leave sends one),
		// and no membership is ifmgr's business: nothing to converge.
		return
	}
	// Re-read what the events name: one get per link, or, when a burst
	// touches a good part of the links (a bulk bring-up), one dump, a single
	// request however many links it returns.
	var dumped map[uint32]kernel.Link
	if len(touched) > max(dumpOver, m.links.len()/4) {
		links, err := m.cfg.Kernel.Links()
		if err != nil {
			m.log.Warn("re-reading links after events failed; resyncing", "links", len(touched), "err", err)
			m.resync("event-read-failed")
			return
		}
		dumped = make(map[uint32]kernel.Link, len(links))
		for _, l := range links {
			dumped[l.Index] = l
		}
	}
	for idx := range touched {
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
			l, err = m.cfg.Kernel.LinkByIndex(idx)
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
	m.converge("link events")
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

	switch {
	case present && m.owned(l, c):
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
			m.setAlias(l.Index, e.rec.Identity) // the crash fell between create and alias
		}
	case present:
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
		switch {
		case e == nil:
		case plan.Derived(e.rec.Identity):
			// A reservation: the hardware may come back and must get the
			// same unit without a DB write.
			if e.index != 0 {
				// ifmgr detaches what it deletes itself before the event,
				// and a VLAN goes with its port (an unplug) by itself.
				if _, parentHere := m.links.named(e.rec.ParentName); e.rec.VID == 0 || parentHere {
					m.log.Warn("deleted from outside", "name", name, "ifindex", e.index, "identity", e.rec.Identity.Key())
				}
				m.entries.detach(e)
				changed = true
			}
		default:
			m.drop(e, t, "interface vanished")
			changed = true
		}
	}
	return changed
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

func (m *Manager) setAlias(index uint32, id persist.Identity) {
	if err := m.cfg.Kernel.SetAlias(index, aliasText(id)); err != nil {
		m.log.Warn("set ownership alias", "ifindex", index, "err", err)
	}
}

func aliasText(id persist.Identity) string {
	b, _ := json.Marshal(id) // a struct of strings and ints cannot fail
	return aliasPrefix + string(b)
}

// identityFromAlias recovers the identity ifmgr wrote on its own link; if the
// alias is missing or damaged, the name itself is the identity.
func identityFromAlias(alias, name string) persist.Identity {
	var id persist.Identity
	if rest, ok := strings.CutPrefix(alias, aliasPrefix); ok && json.Unmarshal([]byte(rest), &id) == nil && id.Key() != "" {
		return id
	}
	return persist.Identity{Name: name}
}
