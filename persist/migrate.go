package persist

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// migration upgrades the DB by one schema version inside the caller's write
// transaction; it must not commit or touch meta/schema itself.
type migration func(tx *bolt.Tx) error

// migrations[v] upgrades schema v to v+1. There never was a version 0, so
// migrations[0] is nil and a stored 0 is treated as damage. Adding schema 2
// means: bump SchemaVersion and append the 1->2 function here.
var migrations = []migration{
	0: nil,
	1: schema1to2,
}

// schema1to2 changes no byte: schema 2's records may carry Identity.Link
// (the name of a port without a permanent MAC), which schema-1 records
// never have, so every schema-1 record is a valid schema-2 record as it
// stands. The version moves anyway, because the reverse is not true:
// firmware that knows only schema 1 would read a record with Link as the
// identity without it (colliding with a shared bridge's, or with another
// port's) and rewrite or retire it. With schema 2 on the file it refuses
// the DB instead (ErrSchemaTooNew: it runs from memory and leaves the file
// for the next upgrade). Moving the units of schema-1 identities to
// today's identities needs the kernel (which port has which MAC now), so
// ifmgr does that at its first convergence (ifmgr/migrate.go), not here.
func schema1to2(*bolt.Tx) error { return nil }

func init() {
	if len(migrations) != SchemaVersion {
		panic(fmt.Sprintf("persist: %d migrations registered for schema %d", len(migrations), SchemaVersion))
	}
}

var (
	bucketMeta  = []byte("meta")
	bucketUnits = []byte("units")
	keySchema   = []byte("schema")
)

// migrate runs migs[from] .. migs[to-1] and records `to` in the same
// transaction, so a power cut in the middle leaves the old schema intact.
func migrate(tx *bolt.Tx, from, to uint32, migs []migration) error {
	if from == 0 || from > to || int(to) > len(migs) {
		return fmt.Errorf("no migration path from schema %d to %d", from, to)
	}
	for v := from; v < to; v++ {
		if migs[v] == nil {
			return fmt.Errorf("no migration from schema %d", v)
		}
		if err := migs[v](tx); err != nil {
			return fmt.Errorf("migrating schema %d to %d: %w", v, v+1, err)
		}
	}
	return putSchema(tx, to)
}

func putSchema(tx *bolt.Tx, v uint32) error {
	meta, err := tx.CreateBucketIfNotExists(bucketMeta)
	if err != nil {
		return err
	}
	return meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, v))
}

// initSchema lays out a new, empty DB.
func initSchema(tx *bolt.Tx) error {
	if _, err := tx.CreateBucketIfNotExists(bucketUnits); err != nil {
		return err
	}
	return putSchema(tx, SchemaVersion)
}
