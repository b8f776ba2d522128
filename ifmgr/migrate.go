package ifmgr

import (
	"github.com/uroute/uroute/ifmgr/plan"
	"github.com/uroute/uroute/persist"
)

// adoptLegacy moves each unit reserved under an identity that older firmware
// derived (plan.LegacyPortIdentity: a port without a permanent MAC was its
// current MAC, or its bus path alone) to the identity this build derives for
// the same target, so that an upgrade renumbers nothing: the record is
// rewritten under the new identity, same unit, and the link's alias with it.
// This happens once per reservation, at the first convergence that sees its
// port, in one commit; afterwards the new identity is on record and nothing
// is written again. A reservation whose port is absent keeps its old
// identity until the port comes back (or it is retired like any other).
// It reports whether anything moved (the plan must then be computed again).
func (m *Manager) adoptLegacy(pl plan.Plan) bool {
	var t txn
	var moved []*entry
	for _, tg := range pl.Targets {
		if tg.Legacy == (persist.Identity{}) || m.entries.withIdentity(tg.Key()) != nil {
			continue
		}
		e := m.entries.withIdentity(tg.Legacy.Key())
		if e == nil || e.cloner.Name != tg.Cloner {
			continue
		}
		old := e.rec.Identity
		m.entries.rekey(e, tg.Identity)
		t.puts = append(t.puts, e.rec)
		moved = append(moved, e)
		m.log.Info("identity migrated", "name", e.name(), "from", old.Key(), "to", tg.Key())
	}
	if len(moved) == 0 {
		return false
	}
	// A failed commit leaves the old identity in the DB; the entry has the
	// new one, so the links stay where they are, and the next start (or
	// the next commit, which writes these records again with its own)
	// migrates again.
	if err := m.commit(&t, "identity migration"); err == nil {
		for _, e := range moved {
			if e.index != 0 {
				m.setAlias(e.index, e.rec.Identity)
			}
		}
	}
	return true
}
