package ifmgr

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
	"github.com/uroute/uroute/persist"
)

// planLinks describes the observed links to the planner: ownership and
// identity from ifmgr's records, driver and bus from sysfs.
func (m *Manager) planLinks() []plan.Link {
	byIndex := make(map[uint32]*entry, len(m.managed))
	for _, e := range m.managed {
		if e.index != 0 {
			byIndex[e.index] = e
		}
	}
	out := make([]plan.Link, 0, len(m.links))
	for _, l := range m.links {
		pl := plan.Link{
			Index: l.Index, Name: l.Name, Kind: l.Kind, Master: l.Master, ParentIndex: l.IfLink, VLANID: l.VLANID,
			Up:  l.Flags&iffUp != 0,
			MAC: strings.ToLower(l.MAC.String()), PermMAC: strings.ToLower(l.PermMAC.String()),
		}
		if e := byIndex[l.Index]; e != nil {
			pl.Owned, pl.Identity = true, e.rec.Identity
		} else if l.Group == m.cfg.OwnerGroup {
			pl.Owned = true // ours but unrecorded (being adopted): never a port
		}
		if m.cfg.Facts != nil && !pl.Owned {
			// A device's driver and bus do not change under its ifindex;
			// read sysfs once per link, not once per event batch.
			f, ok := m.facts[l.Index]
			if !ok {
				f.driver, f.bus = m.cfg.Facts(l.Name)
				m.facts[l.Index] = f
			}
			pl.Driver, pl.Bus = f.driver, f.bus
		}
		out = append(out, pl)
	}
	return out
}

type linkFacts struct{ driver, bus string }

// converge brings the kernel to what the profile derives from the links now
// present. New identities get units in one transaction, committed before any
// link is created; known identities reuse their reserved units with no DB
// write at all. Without a profile, ifmgr manages only what ifctl asks for.
func (m *Manager) converge(why string) {
	if m.profile == nil {
		return
	}
	// A round can leave work for the next: a name found taken by a foreign
	// link moves its identity to another unit. Each round either finishes or
	// holds one more unit, so a few rounds always settle.
	for round := 0; round < 4; round++ {
		pl := plan.Compute(m.profile, m.planLinks())
		if len(pl.Actions) == 0 {
			return
		}
		if !m.apply(pl, why) {
			return
		}
	}
}

// apply carries out a plan and reports whether another round may help.
func (m *Manager) apply(pl plan.Plan, why string) (again bool) {
	var t txn
	for _, a := range pl.Actions {
		if a.Kind != plan.Delete {
			continue
		}
		if err := m.cfg.Kernel.Delete(a.Link); err != nil && !errors.Is(err, kernel.ErrNotFound) {
			m.log.Error("delete derived link", "name", a.Name, "why", a.Why, "err", err)
			continue
		}
		m.log.Info("deleted", "name", a.Name, "why", a.Why, "trigger", why)
		if l, ok := m.links[a.Link]; ok {
			m.forget(l)
			if e := m.managed[l.Name]; e != nil {
				e.index = 0 // the record stays: a reservation for when it is wanted again
			}
		}
	}

	for _, a := range pl.Actions {
		if a.Kind != plan.BringUp {
			continue
		}
		if err := m.cfg.Kernel.SetUp(a.Link, true); err != nil && !errors.Is(err, kernel.ErrNotFound) {
			m.log.Error("bring port up", "name", a.Name, "err", err)
			continue
		}
		if l, ok := m.links[a.Link]; ok {
			l.Flags |= iffUp
			m.links[a.Link] = l
		}
	}

	type creation struct {
		target plan.Target
		e      *entry
	}
	var creates []creation
	for _, a := range pl.Actions {
		if a.Kind != plan.Create {
			continue
		}
		c := m.byCloner[a.Target.Cloner]
		if c == nil {
			m.log.Error("profile derives an interface of an unknown cloner", "cloner", a.Target.Cloner)
			continue
		}
		e := m.byIdentity[a.Target.Key()]
		if e == nil {
			u, err := m.alloc[c.Name].AllocLowest()
			if err != nil {
				m.log.Error("no unit for a derived interface", "identity", a.Target.Key(), "err", err)
				continue
			}
			rec := persist.Record{Cloner: c.Name, Unit: u, Identity: a.Target.Identity, VID: a.Target.VID}
			if p, ok := m.links[a.Target.ParentIndex]; ok && a.Target.VID != 0 {
				rec.ParentName = p.Name
			}
			e = &entry{rec: rec, cloner: c}
			m.addEntry(e)
			t.puts = append(t.puts, rec)
		}
		creates = append(creates, creation{a.Target, e})
	}
	if len(t.puts) > 0 {
		// The table changes anyway: stamp what is present and retire the
		// reservations absent longest, in the same transaction.
		t.puts = m.stampAndRetire(t.puts, &t.dels)
	}
	if err := m.commit(&t, "derive "+why); err != nil {
		for _, cr := range creates {
			if cr.e.index == 0 && containsRecord(t.puts, cr.e.rec) {
				m.removeEntry(cr.e)
				m.alloc[cr.e.cloner.Name].Free(cr.e.rec.Unit)
			}
		}
		return false
	}

	for _, cr := range creates {
		name := cr.e.cloner.IfName(cr.e.rec.Unit)
		var l kernel.Link
		var err error
		if cr.target.Cloner == board.ClonerVLAN {
			l, err = m.cfg.Kernel.CreateVLAN(name, cr.target.ParentIndex, cr.target.VID, m.cfg.OwnerGroup)
		} else {
			l, err = m.cfg.Kernel.CreateBridge(name, m.cfg.OwnerGroup)
		}
		if errors.Is(err, kernel.ErrExists) && m.nameExists(name) {
			// A foreign link sits on the reserved name: it keeps it, the
			// identity moves to a new unit in the next round.
			var t2 txn
			m.settle(name, &t2)
			m.commit(&t2, "name taken")
			again = true
			continue
		}
		if err != nil {
			m.log.Error("create derived interface", "name", name, "identity", cr.target.Key(), "err", err)
			continue
		}
		m.observe(l)
		cr.e.index = l.Index
		m.setAlias(l.Index, cr.e.rec.Identity)
		if err := m.cfg.Kernel.SetUp(l.Index, true); err != nil {
			m.log.Warn("bring link up", "name", name, "err", err)
		}
		if cr.target.Master != "" {
			m.join(l.Index, name, cr.target.Master)
		}
		m.log.Info("created", "name", name, "ifindex", l.Index, "identity", cr.target.Key(), "trigger", why)
	}

	for _, a := range pl.Actions {
		switch a.Kind {
		case plan.SetMaster:
			m.join(a.Link, a.Name, a.Master)
		case plan.Release:
			if err := m.cfg.Kernel.SetMaster(a.Link, 0); err != nil && !errors.Is(err, kernel.ErrNotFound) {
				m.log.Error("release port", "name", a.Name, "err", err)
			}

		}
	}
	return again
}

// join makes a link a port of the bridge with the given identity.
func (m *Manager) join(index uint32, name, bridge string) {
	b := m.byIdentity[bridge]
	if b == nil || b.index == 0 {
		m.log.Warn("bridge to join is missing", "port", name, "bridge", bridge)
		return
	}
	if err := m.cfg.Kernel.SetMaster(index, b.index); err != nil && !errors.Is(err, kernel.ErrNotFound) {
		m.log.Error("join bridge", "port", name, "bridge", b.cloner.IfName(b.rec.Unit), "err", err)
		return
	}
	if l, ok := m.links[index]; ok {
		l.Master = b.index
		m.links[index] = l
	}
}

func containsRecord(recs []persist.Record, r persist.Record) bool {
	for _, x := range recs {
		if x.Key() == r.Key() {
			return true
		}
	}
	return false
}

// setProfile swaps the profile in force. The cloners are fixed for the life
// of the daemon (their allocations are keyed by them), so a profile that
// changes them is refused.
func (m *Manager) setProfile(p *board.Profile) error {
	if p != nil {
		for name, spec := range p.Cloners {
			c := m.byCloner[name]
			if c == nil || c.Template() != spec.Template || c.MaxUnit != spec.Max {
				return fmt.Errorf("%w: cloner %s %q max %d differs from the running %s; restart ifmgrd to change cloners", ErrBadProfile, name, spec.Template, spec.Max, describe(c))
			}
		}
	}
	m.profile = p
	return nil
}

func describe(c *Cloner) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%q max %d", c.Template(), c.MaxUnit)
}

// DefaultMaxAbsent bounds the reservations kept for hardware that is not
// present, per cloner: years of USB dongles and random MACs must not grow
// the table or the unit space without bound.
const DefaultMaxAbsent = 256

// stampAndRetire runs only in a transaction that allocates anyway, so
// flaps, replugs and restarts stay free of writes. It advances the logical
// clock (not wall time: routers boot without an RTC), stamps the new records
// and every present derived record with it, and then retires the absent
// reservations with the oldest stamps beyond the bound.
func (m *Manager) stampAndRetire(puts []persist.Record, dels *[]persist.RecordKey) []persist.Record {
	m.clock++
	fresh := map[persist.RecordKey]bool{}
	for i := range puts {
		puts[i].LastSeen = m.clock
		fresh[puts[i].Key()] = true
		if e := m.byIdentity[puts[i].Identity.Key()]; e != nil {
			e.rec.LastSeen = m.clock
		}
	}
	absent := map[string][]*entry{}
	for _, e := range m.managed {
		if !plan.Derived(e.rec.Identity) || fresh[e.rec.Key()] {
			continue
		}
		if e.index != 0 {
			if e.rec.LastSeen < m.clock {
				e.rec.LastSeen = m.clock
				puts = append(puts, e.rec)
			}
			continue
		}
		absent[e.cloner.Name] = append(absent[e.cloner.Name], e)
	}
	limit := m.cfg.MaxAbsent
	if limit <= 0 {
		limit = DefaultMaxAbsent
	}
	for _, list := range absent {
		if len(list) <= limit {
			continue
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].rec.LastSeen != list[j].rec.LastSeen {
				return list[i].rec.LastSeen < list[j].rec.LastSeen
			}
			return list[i].rec.Unit < list[j].rec.Unit
		})
		for _, e := range list[:len(list)-limit] {
			m.removeEntry(e)
			m.alloc[e.cloner.Name].Free(e.rec.Unit)
			*dels = append(*dels, e.rec.Key())
			m.log.Info("reservation retired", "name", e.cloner.IfName(e.rec.Unit), "identity", e.rec.Identity.Key(), "last_seen", e.rec.LastSeen)
		}
	}
	return puts
}
