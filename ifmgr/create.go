package ifmgr

import (
	"errors"
	"fmt"

	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
)

// createLink is the one path that makes the kernel link of a managed
// interface, for ifctl requests (ops.go) and the board profile (converge.go)
// alike. e (cloner, unit, identity) is in the entry table and its record is
// committed, so a crash from here on leaves a record that startup
// reconciles; parent and vid are the VLAN's lower link and id, opt a
// bridge's VLAN-filtering settings (each ignored for the other kind). why
// says what asked for it, for the log.
//
// On success the link is observed, e attached to it, the ownership alias
// written and the link set up. On failure the error says why, and the one
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
func (m *Manager) createLink(e *entry, parent uint32, vid uint16, opt kernel.BridgeOptions, t *txn, why string) (kernel.Link, error) {
	name := e.name()
	var l kernel.Link
	var err error
	switch e.cloner.Kind {
	case kernel.KindVLAN:
		l, err = m.cfg.Kernel.CreateVLAN(name, parent, vid, m.cfg.OwnerGroup)
	case kernel.KindBridge:
		l, err = m.cfg.Kernel.CreateBridgeWith(name, m.cfg.OwnerGroup, opt)
	default:
		err = fmt.Errorf("cloner %s: kind %q: %w", e.cloner.Name, e.cloner.Kind, ErrUnknownKind)
	}
	switch {
	case err == nil:
		m.links.observe(l)
		m.entries.attach(e, l.Index)
		m.setAlias(l.Index, e.rec.Identity)
	case errors.Is(err, kernel.ErrExists):
		err = m.afterExists(e, t)
		if errors.Is(err, ErrNameTaken) {
			return kernel.Link{}, err // e is dropped already
		}
	default:
		err = fmt.Errorf("create %s: %w: %w", name, ErrKernel, err)
	}
	if err != nil {
		if !plan.Derived(e.rec.Identity) {
			m.release(e, t)
		}
		return kernel.Link{}, err
	}
	// A bridge is created up, in its creating message (Kernel.CreateBridgeWith);
	// a VLAN cannot be (its parent may be down), so it is set up here. The
	// watcher's event for the up (and the carrier that follows) refreshes
	// the cached flags; no extra round trip here.
	if l.Flags&iffUp == 0 {
		if err := m.cfg.Kernel.SetUp(l.Index, true); err != nil {
			m.log.Warn("bring link up", "name", name, "err", err)
		}
	}
	m.log.Info("created", "name", name, "ifindex", l.Index, "identity", e.rec.Identity.Key(), "trigger", why)
	return l, nil
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
