// Package persist keeps ifmgr's unit allocations (bridge0, vlan3, ...) on
// flash so that the same identity gets the same unit after a reboot.
//
// ifmgr commits a record before it creates the kernel interface and
// reconciles against the kernel at startup, so the store only has to be
// durable (every Apply is fsynced before it returns) and never the reason the
// router fails to boot.
//
// # File layout (bbolt, SchemaVersion 2)
//
//	meta/               bucket
//	  "schema"          big-endian uint32 schema version, written at creation
//	units/              bucket
//	  <cloner>/         one nested bucket per cloner name ("bridge", "vlan")
//	    <unit>          4-byte big-endian unit -> JSON of Record
//
// Schema 2 differs from 1 only in what a record may hold: an Identity with
// Link (see migrate.go's schema1to2 for why the version moved anyway).
//
// Big-endian keys make cursor order equal numeric order, so Records comes out
// sorted without a sort. Values are JSON so their content does not depend on
// the byte order of the CPU that wrote them (bbolt's own page format does;
// see below).
//
// # Schema migrations
//
// Open reads meta/schema. If it is older than SchemaVersion, the functions in
// migrations[v] (each upgrading v to v+1) run in order inside one write
// transaction that also stores the new version, so a power cut leaves either
// the old or the new schema, never a mix. If it is newer, Open returns
// ErrSchemaTooNew and does not modify, move or lock the file: after a
// firmware downgrade the newer DB must survive for the next upgrade, and the
// caller decides whether to run from MemoryPath instead. A newer bbolt
// on-disk format version is refused the same way. So every future schema
// must keep meta/schema where it is; everything else may change.
//
// # Damaged files
//
// A file that cannot be trusted (zero length, truncated, random bytes, broken
// meta pages, garbage freelist or tree pages, a DB written on a CPU of the
// other byte order, a missing meta bucket) is renamed to
// "<path>.corrupt-<N>", one Error line is logged, a fresh empty DB is created
// at path and Open returns it with a Recovery that says what happened. The
// caller then rebuilds the records from the kernel. Only the newest 3 such
// files are kept, so years of bad luck cannot fill the flash.
//
// bbolt trusts its file: on damaged input it can panic, fault on the mmap
// (SIGBUS on a truncated file) or loop forever, and some of that happens
// on goroutines bbolt starts itself (tx.Check, and the freelist rebuild for
// files without a synced freelist), where no recover can reach it. So Open
// first validates the page structure with ordinary bounds-checked reads
// (preflight.go) and only then hands the file to bbolt, under recover and
// debug.SetPanicOnFault, walks every record and runs tx.Check.
//
// # Concurrency
//
// A Store is meant for a single owner (ifmgr's goroutine). Its methods take a
// mutex, so an occasional call from elsewhere (Commits and Size for
// `ifctl status`) is safe, but calls are serialised, not concurrent. Across
// processes the file is flock()ed; a second daemon gets ErrLocked after one
// second instead of hanging.
package persist
