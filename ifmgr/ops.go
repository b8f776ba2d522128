package ifmgr

import (
	"errors"
	"fmt"

	"github.com/uroute/uroute/ifmgr/ifname"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
	"github.com/uroute/uroute/persist"
)

// createOp is one create request on its way through a batch.
type createOp struct {
	req      *request
	cloner   *Cloner
	specific bool
	unit     uint32
	parent   kernel.Link
	vid      uint16
}

// parseCreate turns a request into an op without touching any state, so bad
// input is refused before anything is allocated.
func (m *Manager) parseCreate(r *request) (*createOp, error) {
	cr := r.create
	op := &createOp{req: r}
	if c := m.byCloner[cr.Name]; c != nil {
		op.cloner = c
	} else {
		for _, c := range m.cloners {
			u, ok := c.ParseName(cr.Name)
			if !ok {
				continue
			}
			if u > uint64(c.MaxUnit) {
				return nil, fmt.Errorf("unit %d past max %d: %w", u, c.MaxUnit, ErrUnitRange)
			}
			op.cloner, op.specific, op.unit = c, true, uint32(u)
			break
		}
	}
	if op.cloner == nil {
		if err := ifname.Valid(cr.Name); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%q is neither a cloner (%s) nor a name one renders: %w", cr.Name, m.clonerNames(), ErrUnknownKind)
	}
	switch op.cloner.Kind {
	case kernel.KindVLAN:
		if err := ifname.ValidVID(cr.VID); err != nil {
			return nil, err
		}
		op.vid = uint16(cr.VID)
		if cr.Dev == "" {
			return nil, fmt.Errorf("a VLAN needs a parent device (--dev): %w", ErrBadRequest)
		}
		idx, ok := m.byIfName[cr.Dev]
		if !ok {
			return nil, fmt.Errorf("parent %q: %w", cr.Dev, ErrNoSuchLink)
		}
		op.parent = m.links[idx]
		for _, l := range m.links {
			if l.Kind == kernel.KindVLAN && l.IfLink == idx && l.VLANID == op.vid {
				return nil, fmt.Errorf("vid %d on %s is %s: %w", op.vid, cr.Dev, l.Name, ErrVLANExists)
			}
		}
	default:
		if cr.Dev != "" || cr.VID != 0 {
			return nil, fmt.Errorf("a %s takes no parent or vid: %w", op.cloner.Kind, ErrBadRequest)
		}
	}
	return op, nil
}

func (m *Manager) clonerNames() string {
	s := ""
	for i, c := range m.cloners {
		if i > 0 {
			s += ", "
		}
		s += c.Name
	}
	return s
}

// allocate takes the op's unit from the allocator.
func (m *Manager) allocate(op *createOp) error {
	a := m.alloc[op.cloner.Name]
	if op.specific {
		if err := a.Alloc(op.unit); err != nil {
			return err
		}
		return nil
	}
	u, err := a.AllocLowest()
	if err != nil {
		return fmt.Errorf("%s: %w", op.cloner.Name, err)
	}
	op.unit = u
	return nil
}

func (op *createOp) record() persist.Record {
	rec := persist.Record{Cloner: op.cloner.Name, Unit: op.unit, Identity: persist.Identity{Name: op.cloner.IfName(op.unit)}}
	if op.cloner.Kind == kernel.KindVLAN {
		rec.ParentName, rec.VID = op.parent.Name, op.vid
	}
	return rec
}

// createBatch allocates every op, commits all their records in one
// transaction, and only then creates the links: a crash at any point leaves
// either no record or a record that startup reconciles. A name taken by a
// foreign link in the meantime (EEXIST) marks its unit held and moves a
// wildcard request on to the next unit, in another round that shares its
// transaction with the release of the skipped record.
func (m *Manager) createBatch(reqs []*request) {
	var pending []*createOp
	for _, r := range reqs {
		op, err := m.parseCreate(r)
		if err != nil {
			r.answer(response{err: err})
			continue
		}
		pending = append(pending, op)
	}
	var t txn
	for len(pending) > 0 {
		var ready []*createOp
		for _, op := range pending {
			if err := m.allocate(op); err != nil {
				op.req.answer(response{err: err})
				continue
			}
			ready = append(ready, op)
			t.puts = append(t.puts, op.record())
		}
		if err := m.commit(&t, "create"); err != nil {
			for _, op := range ready {
				m.alloc[op.cloner.Name].Free(op.unit)
				op.req.answer(response{err: fmt.Errorf("%s: %w: %w", op.cloner.IfName(op.unit), ErrPersist, err)})
			}
			t = txn{} // records that did not commit need no removal
			return
		}
		pending = nil
		for _, op := range ready {
			if retry := m.createLink(op, &t); retry {
				pending = append(pending, op)
			}
		}
	}
	m.commit(&t, "create cleanup")
}

// createLink creates one link whose record is committed. It reports whether
// the op must be tried again with another unit.
func (m *Manager) createLink(op *createOp, t *txn) (retry bool) {
	name := op.cloner.IfName(op.unit)
	a := m.alloc[op.cloner.Name]
	var l kernel.Link
	var err error
	switch op.cloner.Kind {
	case kernel.KindVLAN:
		l, err = m.cfg.Kernel.CreateVLAN(name, op.parent.Index, op.vid, m.cfg.OwnerGroup)
	default:
		l, err = m.cfg.Kernel.CreateBridge(name, m.cfg.OwnerGroup)
	}
	if err == nil {
		m.observe(l)
		e := &entry{rec: op.record(), cloner: op.cloner, index: l.Index}
		m.addEntry(e)
		m.setAlias(l.Index, e.rec.Identity)
		// The watcher's event for the up (and the carrier that follows)
		// refreshes the cached flags; no extra round trip here.
		if err := m.cfg.Kernel.SetUp(l.Index, true); err != nil {
			m.log.Warn("bring link up", "name", name, "err", err)
		}
		m.log.Info("created", "name", name, "ifindex", l.Index, "identity", e.rec.Identity.Key())
		op.req.answer(response{info: m.info(e)})
		return false
	}

	a.Free(op.unit)
	t.dels = append(t.dels, persist.RecordKey{Cloner: op.cloner.Name, Unit: op.unit})
	if !errors.Is(err, kernel.ErrExists) {
		op.req.answer(response{err: fmt.Errorf("create %s: %w: %w", name, ErrKernel, err)})
		return false
	}
	// EEXIST: either the name was taken behind our back, or (VLAN) the vid
	// already exists on the parent. Only the kernel knows which.
	if op.cloner.Kind == kernel.KindVLAN && !m.nameExists(name) {
		op.req.answer(response{err: fmt.Errorf("create %s: vid %d on %s: %w", name, op.vid, op.parent.Name, ErrVLANExists)})
		return false
	}
	if op.cloner.Kind != kernel.KindVLAN {
		m.nameExists(name) // observe the intruder so its removal frees the unit
	}
	if err := a.Hold(op.unit); err != nil {
		m.log.Error("mark unit held", "name", name, "err", err)
	}
	m.log.Info("name taken by a foreign interface while creating; unit held until it goes", "name", name)
	if op.specific {
		op.req.answer(response{err: fmt.Errorf("%s: %w", name, ErrNameTaken)})
		return false
	}
	return true
}

// nameExists asks the kernel, not our cache: after EEXIST the cache is
// exactly what is in doubt. A link found is observed, so its later removal
// releases the unit it holds.
func (m *Manager) nameExists(name string) bool {
	l, err := m.cfg.Kernel.LinkByName(name)
	switch {
	case err == nil:
		m.observe(l)
		return true
	case errors.Is(err, kernel.ErrNotFound):
		return false
	default:
		return true // assume the name: holding a unit is safe, reusing a taken one is not
	}
}

// destroyBatch deletes links first and records after, in one transaction: a
// crash in between leaves records without links, which startup frees.
func (m *Manager) destroyBatch(reqs []*request) {
	var t txn
	var done []*request
	for _, r := range reqs {
		e := m.managed[r.name]
		if e == nil {
			if _, ok := m.byIfName[r.name]; ok {
				r.answer(response{err: fmt.Errorf("%s: %w", r.name, ErrNotOwned)})
			} else {
				r.answer(response{err: fmt.Errorf("%s: %w", r.name, ErrNoSuchLink)})
			}
			continue
		}
		if plan.Derived(e.rec.Identity) {
			r.answer(response{err: fmt.Errorf("%s: %w", r.name, ErrFromProfile)})
			continue
		}
		if e.index != 0 {
			if err := m.cfg.Kernel.Delete(e.index); err != nil && !errors.Is(err, kernel.ErrNotFound) {
				r.answer(response{err: fmt.Errorf("destroy %s: %w: %w", r.name, ErrKernel, err)})
				continue
			}
			if l, ok := m.links[e.index]; ok {
				m.forget(l)
			}
		}
		m.removeEntry(e)
		m.alloc[e.cloner.Name].Free(e.rec.Unit)
		t.dels = append(t.dels, e.rec.Key())
		m.log.Info("destroyed", "name", r.name)
		done = append(done, r)
	}
	err := m.commit(&t, "destroy")
	for _, r := range done {
		if err != nil {
			// The links are gone; the stale records are freed at next startup.
			r.answer(response{err: fmt.Errorf("destroy %s: link deleted but %w: %w", r.name, ErrPersist, err)})
			continue
		}
		r.answer(response{})
	}
}
