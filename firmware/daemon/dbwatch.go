package daemon

import (
	"context"
	"log/slog"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/persist"
)

// openDB opens the allocation DB through a persist.Keeper: a location that
// cannot be used (a file system bbolt cannot run on, a read-only or full
// partition, a DB from newer firmware) makes ifmgrd run from memory and say
// why in its log and `ifctl status`, never stop. The router must come up
// with its bridges whatever state its flash is in. Only a DB locked by
// another daemon is an error.
func openDB(o Options, log *slog.Logger) (*persist.Keeper, persist.Recovery, error) {
	opts := persist.KeeperOptions{Logger: log}
	if o.DB != persist.MemoryPath {
		mirror, why := o.DBMirror, "-db-mirror"
		if !mirror {
			mirror, why = needsMirror(o.DB, o.statfs)
		}
		if mirror {
			// bbolt cannot map its file on JFFS2: it runs in RAM and every
			// commit is on flash, as a snapshot, before Apply returns.
			snap, work := mirrorPaths(o.DB)
			log.Info("allocation DB mirrored: bbolt in RAM, every commit a snapshot on flash", "snapshot", snap, "why", why)
			opts.Open = func(_ string, po persist.Options) (*persist.Store, persist.Recovery, error) {
				return persist.OpenMirrored(snap, work, po)
			}
		}
	}
	return persist.OpenKeeper(o.DB, opts)
}

// Status adds why nothing persists, if so, to the manager's status.
func (b *backend) Status(ctx context.Context) (ifmgr.Status, error) {
	st, err := b.Manager.Status(ctx)
	if err == nil && b.db != nil {
		st.DBProblem = b.db.Problem()
	}
	return st, err
}

// Resync also rechecks the DB location at once: an operator who has freed
// space or remounted /data read-write should not have to wait for the
// periodic check.
func (b *backend) Resync(ctx context.Context) error {
	if b.db != nil {
		b.db.Recheck()
	}
	return b.Manager.Resync(ctx)
}
