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
	e        *entry // once allocated
	inDoubt  int    // EEXISTs for names the kernel then showed free
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
		parent, ok := m.links.named(cr.Dev)
		if !ok {
			return nil, fmt.Errorf("parent %q: %w", cr.Dev, ErrNoSuchLink)
		}
		op.parent = parent
		var twin string
		m.links.each(func(l kernel.Link) {
			if l.Kind == kernel.KindVLAN && l.IfLink == parent.Index && l.VLANID == op.vid {
				twin = l.Name
			}
		})
		if twin != "" {
			return nil, fmt.Errorf("vid %d on %s is %s: %w", op.vid, cr.Dev, twin, ErrVLANExists)
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

// allocate takes the op's unit from the allocator and enters it in the
// entry table; its record goes into t.
func (m *Manager) allocate(op *createOp, t *txn) error {
	a := m.alloc[op.cloner.Name]
	if op.specific {
		if err := a.Alloc(op.unit); err != nil {
			return err
		}
	} else {
		u, err := a.AllocLowest()
		if err != nil {
			return fmt.Errorf("%s: %w", op.cloner.Name, err)
		}
		op.unit = u
	}
	rec := persist.Record{Cloner: op.cloner.Name, Unit: op.unit, Identity: persist.Identity{Name: op.cloner.IfName(op.unit)}}
	if op.cloner.Kind == kernel.KindVLAN {
		rec.ParentName, rec.VID = op.parent.Name, op.vid
	}
	op.e = &entry{rec: rec, cloner: op.cloner}
	m.entries.add(op.e)
	t.puts = append(t.puts, rec)
	return nil
}

// createBatch allocates every op, commits all their records in one
// transaction, and only then creates the links, pipelined (createLinks): a crash at any point leaves
// either no record or a record that startup reconciles. A name taken by a
// foreign link in the meantime (EEXIST, see createLink) holds its unit and
// moves a wildcard request on to the next unit, in another round that shares
// its transaction with the release of the skipped record.
func (m *Manager) createBatch(reqs []*request) {
	var pending []*createOp
	for _, r := range reqs {
		if r.skip() {
			continue
		}
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
			if op.req.skip() {
				continue
			}
			if err := m.allocate(op, &t); err != nil {
				op.req.answer(response{err: err})
				continue
			}
			ready = append(ready, op)
		}
		if err := m.commit(&t, "create"); err != nil {
			for _, op := range ready {
				m.unallocate(op.e)
				op.req.answer(response{err: fmt.Errorf("%s: %w: %w", op.cloner.IfName(op.unit), ErrPersist, err)})
			}
			// The records did not commit and need no removal; the
			// deletions queued by an earlier round are of records whose
			// links do not exist, which the next startup drops.
			return
		}
		pending = nil
		cs := make([]linkToCreate, 0, len(ready))
		making := make([]*createOp, 0, len(ready))
		for _, op := range ready {
			if op.req.skipped() {
				// Committed with the batch, never to have its link.
				m.release(op.e, &t)
				op.req.skip()
				continue
			}
			cs = append(cs, linkToCreate{e: op.e, parent: op.parent.Index, vid: op.vid})
			making = append(making, op)
		}
		var follow followUps
		created := m.createLinks(cs, &follow, &t, "ifctl")
		m.finishCreates(&follow)
		for i, c := range created {
			op, err := making[i], c.err
			if err == nil && op.req.skipped() && m.undoCreate(op.e, &t) {
				// A request before it in its chain failed in this same
				// pipelined batch: what a stopped batch never asked for
				// does not stay. (A link that cannot be deleted stays,
				// and its create is answered: it was made.)
				op.req.skip()
				continue
			}
			switch {
			case err == nil:
				op.req.answer(response{info: m.info(op.e)})
			case errors.Is(err, ErrNameTaken) && !op.specific:
				if errors.Is(err, errNameInDoubt) {
					if op.inDoubt++; op.inDoubt == maxInDoubt {
						op.req.answer(response{err: fmt.Errorf("%w: create answered EEXIST (file exists) for %d names in a row that it then showed free; last: %v", ErrKernel, op.inDoubt, err)})
						continue
					}
				}
				pending = append(pending, op)
			default:
				op.req.answer(response{err: err})
			}
		}
	}
	// Deletions of the records of failed creates. If this commit fails
	// (commit logs it), the records stay behind for links that do not
	// exist, and the next startup's settle drops them.
	_ = m.commit(&t, "create cleanup")
}

// undoCreate deletes the link just made for e and releases its record in t:
// the create of a chain whose earlier request failed in the same batch. It
// reports false, keeping both, if the kernel refuses the delete.
func (m *Manager) undoCreate(e *entry, t *txn) bool {
	if e.index != 0 {
		if err := m.cfg.Kernel.Delete(e.index); err != nil && !errors.Is(err, kernel.ErrNotFound) {
			m.log.Warn("undo create of a skipped request", "name", e.name(), "err", err)
			return false
		}
		m.links.forget(e.index)
	}
	m.release(e, t)
	return true
}

// destroyBatch deletes links first and records after, in one transaction: a
// crash in between leaves records without links, which startup frees.
func (m *Manager) destroyBatch(reqs []*request) {
	var t txn
	var done []*request
	for _, r := range reqs {
		if r.skip() {
			continue
		}
		name := r.destroy
		// The unit's own name first: it is what the client was given,
		// and it names the interface whatever another process called its
		// link since. The current name of a link renamed from outside
		// names it too, unless it is another unit's own name: then the
		// link under it is not the one that client was given.
		e := m.entries.named(name)
		if l, ok := m.links.named(name); ok && e == nil {
			e = m.entries.onLink(l.Index)
		}
		if e == nil {
			if _, ok := m.links.named(name); ok {
				r.answer(response{err: fmt.Errorf("%s: %w", name, ErrNotOwned)})
			} else {
				r.answer(response{err: fmt.Errorf("%s: %w", name, ErrNoSuchLink)})
			}
			continue
		}
		if plan.Derived(e.rec.Identity) {
			r.answer(response{err: fmt.Errorf("%s: %w", name, ErrFromProfile)})
			continue
		}
		renamed, wasRenamed := m.renamedLink(e)
		if e.index != 0 {
			if err := m.cfg.Kernel.Delete(e.index); err != nil && !errors.Is(err, kernel.ErrNotFound) {
				r.answer(response{err: fmt.Errorf("destroy %s: %w: %w", name, ErrKernel, err)})
				continue
			}
			m.links.forget(e.index)
		}
		m.release(e, &t)
		if wasRenamed {
			// A unit its other name held is free now too.
			m.settle(renamed.Name, &t)
		}
		m.log.Info("destroyed", "name", name)
		done = append(done, r)
	}
	err := m.commit(&t, "destroy")
	for _, r := range done {
		if err != nil {
			// The links are gone; the stale records are freed at next startup.
			r.answer(response{err: fmt.Errorf("destroy %s: link deleted but %w: %w", r.destroy, ErrPersist, err)})
			continue
		}
		r.answer(response{})
	}
}
