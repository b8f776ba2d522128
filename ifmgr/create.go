package ifmgr

import (
	"errors"
	"fmt"

	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
)

// linkToCreate is one link of a createLinks batch, and what became of
// it.
type linkToCreate struct {
	e      *entry
	parent uint32
	vid    uint16
	opt    kernel.BridgeOptions
	link   kernel.Link
	err    error
}

// createLinks is the one path that makes the kernel links of managed
// interfaces, for ifctl requests (ops.go) and the board profile (converge.go)
// alike. Each entry e (cloner, unit, identity) is in the entry table and its
// record is committed, so a crash from here on leaves a record that startup
// reconciles; parent and vid are the VLAN's lower link and id, opt a
// bridge's VLAN-filtering settings (each ignored for the other kind). why
// says what asked for it, for the log.
//
// Their RTM_NEWLINKs go out as one pipelined batch (Kernel.Batch), each
// request's answer matched to it; what each created link still needs (its
// ownership alias, a VLAN's up) is added to follow, which the caller sends
// (followUps.run) as one more batch once the work that waits on the creates
// (the ports' joins) has gone out. The entries must not depend on each other (a VLAN on a bridge of the
// same batch needs the bridge's ifindex: it goes in a later one). EEXIST
// answers are settled one by one afterwards (afterExists reads the kernel),
// in the batch's order. Each linkToCreate comes back with its link or err.
//
// On success the link is observed, e attached to it, and its alias and up
// queued in follow. On failure the error says why, and the one
// EEXIST policy has been applied:
//
//   - the name is taken (ErrNameTaken): e is dropped (its record deletion
//     queued in t), the kernel is re-read and the name settled like any
//     other: a foreign link keeps it and the unit is held until it goes; a
//     link of ifmgr's own that the tables did not know is adopted under the
//     identity its alias carries, as startup would. Either way the caller
//     may try another unit.
//   - the name is free but the parent already has a VLAN with that id
//     (ErrVLANExists).
//
// After any failure but the name taken, e's fate follows what it serves: an
// interface asked for by name (ifctl) is dropped, nothing of it is kept; a
// profile reservation stays, for the next round.
func (m *Manager) createLinks(cs []linkToCreate, follow *followUps, t *txn, why string) []linkToCreate {
	ops := make([]kernel.Op, 0, len(cs))
	at := make([]int, 0, len(cs))
	for i := range cs {
		c := &cs[i]
		name := c.e.name()
		switch c.e.cloner.Kind {
		case kernel.KindVLAN:
			ops = append(ops, kernel.CreateVLANOp(name, c.parent, c.vid, m.cfg.OwnerGroup))
		case kernel.KindBridge:
			// Down: its alias is written before its up (see
			// kernel.CreateBridgeOp), and in a bring-up its port joins
			// before it opens.
			ops = append(ops, kernel.CreateBridgeOp(name, m.cfg.OwnerGroup, c.opt, false))
		default:
			c.err = fmt.Errorf("cloner %s: kind %q: %w", c.e.cloner.Name, c.e.cloner.Kind, ErrUnknownKind)
			continue
		}
		at = append(at, i)
	}
	for k, r := range m.cfg.Kernel.Batch(ops) {
		c := &cs[at[k]]
		c.link, c.err = r.Link, r.Err
		switch {
		case c.err == nil:
			m.links.observe(c.link)
			m.entries.attach(c.e, c.link.Index)
			// Created down, the link is set up behind its alias: on a
			// down link the alias notifies nobody, on an up one it is a
			// NETDEV_CHANGE to every protocol (kernel.CreateBridgeOp). The
			// two share a datagram, so a daemon killed between them
			// cannot leave the alias written and the link down (which
			// would read as an operator's down); a link of ours without
			// its alias is finished by settle (alias, then up).
			down := c.link.Flags&iffUp == 0
			alias := kernel.SetAliasOp(c.link.Index, c.e.rec.Identity.Alias())
			alias.WithNext = down
			follow.add(c.e.name(), alias)
			if down {
				follow.add(c.e.name(), kernel.SetUpOp(c.link.Index, true))
			}
		case errors.Is(c.err, kernel.ErrExists):
			c.err = m.afterExists(c.e, t)
		default:
			c.err = fmt.Errorf("create %s: %w: %w", c.e.name(), ErrKernel, c.err)
		}
	}
	for i := range cs {
		c := &cs[i]
		if c.err != nil {
			if !errors.Is(c.err, ErrNameTaken) && !plan.Derived(c.e.rec.Identity) {
				m.release(c.e, t) // a name taken has dropped e already
			}
			c.link = kernel.Link{}
			continue
		}
		m.log.Info("created", "name", c.e.name(), "ifindex", c.link.Index, "identity", c.e.rec.Identity.Key(), "trigger", why)
	}
	return cs
}

// afterExists applies the EEXIST policy of createLink: ErrNameTaken with e
// dropped, or ErrVLANExists with e untouched.
func (m *Manager) afterExists(e *entry, t *txn) error {
	name := e.name()
	// EEXIST: either the name was taken behind our back, or (VLAN) the vid
	// already exists on the parent. Only the kernel knows which.
	exists := m.nameExists(name, t)
	inDoubt := false
	if l, seen := m.links.named(name); exists && seen {
		if m.owned(l, e.cloner) {
			// Ours, unknown to the tables: e must not take it over (its
			// alias may name another identity); settle adopts it.
			m.drop(e, t, "name taken by an unrecorded link of ifmgr's own")
		}
		m.settle(name, t) // foreign: drops e, holds the unit
	} else {
		if !exists && e.cloner.Kind == kernel.KindVLAN {
			return fmt.Errorf("create %s: vid %d on %s: %w", name, e.rec.VID, e.rec.ParentName, ErrVLANExists)
		}
		// The name was there a moment ago (or the kernel could not say):
		// hold the unit, which is safe; reusing a taken one is not. The
		// next event or resync releases it if the name is free.
		inDoubt = true
		m.drop(e, t, "name taken by a foreign interface while creating")
		if err := m.alloc[e.cloner.Name].Hold(e.rec.Unit); err != nil {
			m.log.Error("mark unit held", "name", name, "err", err)
		}
	}
	m.log.Info("name taken by another interface while creating", "name", name)
	if inDoubt {
		return fmt.Errorf("%s: %w (%w)", name, ErrNameTaken, errNameInDoubt)
	}
	return fmt.Errorf("%s: %w", name, ErrNameTaken)
}

// errNameInDoubt marks an ErrNameTaken whose taker the kernel did not show
// when asked right after its EEXIST: a foreign link gone at once, or a
// kernel answering EEXIST for a free name. createBatch moves a wildcard
// create on to another unit only maxInDoubt times for it: a kernel that
// keeps doing it made one create walk all 32768 units, one DB commit each
// (6m45s with the owner busy; TestKernelAnswersEEXISTFalsely).
var errNameInDoubt = errors.New("the kernel then showed no link of that name")

const maxInDoubt = 8

// nameExists asks the kernel, not our cache: after EEXIST the cache is
// exactly what is in doubt. A link found is observed, so its later removal
// releases the unit it holds. If the cache knew that link under another
// name (renamed into this one, its event still on the way), the old name
// is settled here (in t): the event will name only the new name, and the
// cache no longer leads to the old one, so nothing else would free a unit
// the old name held before the next full resync.
func (m *Manager) nameExists(name string, t *txn) bool {
	l, err := m.cfg.Kernel.LinkByName(name)
	switch {
	case err == nil:
		was, known := m.links.get(l.Index)
		m.links.observe(l)
		if known && was.Name != l.Name {
			m.settle(was.Name, t)
		}
		return true
	case errors.Is(err, kernel.ErrNotFound):
		return false
	default:
		return true // assume the name: holding a unit is safe, reusing a taken one is not
	}
}

// followUps are the requests created links still need after their creates:
// the ownership alias (rtnl_create_link ignores IFLA_IFALIAS, so it cannot
// ride in the creating message) and then the up. They go last: a bring-up's
// ports join their bridges while the bridges are still down, as ip -batch
// scripts do (a bridge opened after its port joined gets no IPv6 link-local
// address and DAD run before it has a carrier). The link's group, set in the
// creating message, is the ownership marker; the alias only names the
// identity, and a link without one (a crash before it was written) gets it,
// and its up, from startup's settle.
type followUps struct {
	ops   []kernel.Op
	names []string // the link each op is for, for the log
}

func (f *followUps) add(name string, op kernel.Op) {
	f.ops = append(f.ops, op)
	f.names = append(f.names, name)
}

// run sends the follow-ups as one pipelined batch and records in the link
// table what was done, as apply records its ups and joins: the events of
// these changes then match the table and need no read-back. A failure is
// logged: the link is made and serves; settle writes a missing alias at the
// next startup or resync, and a VLAN left down is planned up again.
func (m *Manager) finishCreates(f *followUps) {
	if len(f.ops) == 0 {
		return
	}
	for k, r := range m.cfg.Kernel.Batch(f.ops) {
		op := f.ops[k]
		switch {
		case r.Err == nil && op.Set == kernel.SetAlias:
			m.links.setAlias(op.Index, op.Alias)
		case r.Err == nil:
			m.links.markUp(op.Index)
		case op.Set == kernel.SetAlias:
			m.log.Warn("set ownership alias", "name", f.names[k], "ifindex", op.Index, "err", r.Err)
		default:
			m.log.Warn("bring link up", "name", f.names[k], "err", r.Err)
		}
	}
	*f = followUps{}
}
