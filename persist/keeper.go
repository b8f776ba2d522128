package persist

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
)

// DefaultRecheck is how often a Keeper looks at its DB location: whether a
// location it could not use has become usable, and whether the file it
// writes is still the one at its path.
const DefaultRecheck = 30 * time.Second

// KeeperOptions tunes OpenKeeper.
type KeeperOptions struct {
	Logger *slog.Logger // nil = slog.Default()
	// Unusable, if set, is why the DB location must not be touched at all
	// (a file system bbolt cannot run on): the Keeper runs from memory and
	// never probes the location.
	Unusable error
	// Recheck is the period of the background check; 0 = DefaultRecheck,
	// negative = none (tests call Recheck themselves).
	Recheck time.Duration
	// Open opens the store at path; nil = Open. A store that keeps its
	// file elsewhere (OpenMirrored: bbolt in RAM, a snapshot on flash that
	// every commit replaces by rename) has no file at path whose identity
	// could tell a deletion from a commit, so with Open set the Keeper
	// does not watch the file's identity: the snapshot is whole state and
	// the next commit writes it again anyway.
	Open func(path string, opts Options) (*Store, Recovery, error)
}

// Keeper is the allocation store ifmgrd runs on: a Store at path while the
// location can be used, memory while it cannot, so that an unwritable
// data partition never stops the router from making its bridges. It
// implements ifmgr.Store.
//
// Every record is also held in memory. That copy is what Keeper falls back
// to and what it writes back:
//
//   - If Open fails at start (read-only mount, a full file system, an I/O
//     error; not ErrLocked, which means another daemon runs), Keeper runs
//     from memory, with the records of the existing file if it can still be
//     read, and says why in Problem. Every Recheck it tries Open again; once
//     that works it writes everything held in memory to the file and
//     persists from then on. A DB from newer firmware or a location marked
//     Unusable is never retried: only a firmware change cures those.
//   - If the file at path is no longer the one Keeper has open (deleted, or
//     replaced by another file: the device and inode changed), commits
//     would go to an unlinked inode and be lost at the next start. Keeper
//     notices at the next Apply or Recheck, opens path afresh and rewrites
//     every record from memory. Memory wins over a replaced file's content:
//     to restore a backup, stop ifmgrd first.
//
// Apply's contract is the Store's while persisting (nil = durable). While
// running from memory Apply always succeeds and nothing is durable: that is
// the degraded mode Problem reports, chosen so that the router keeps
// routing. A commit that fails while persisting (say the disk fills up) is
// returned as an error, not absorbed: the caller keeps its promise of
// creating nothing it could not record.
type Keeper struct {
	path      string
	open      func(path string, opts Options) (*Store, Recovery, error)
	watchFile bool // path is the file store writes in place: watch its identity
	log       *slog.Logger
	permanent bool          // the problem cannot go away by itself: never probe
	every     time.Duration // recheck period; <= 0: none

	mu      sync.Mutex
	store   *Store               // nil while running from memory
	ident   fileIdentity         // of the file store has open
	mem     map[RecordKey]Record // every record
	dropped map[RecordKey]bool   // deleted while in memory: delete from the file too
	problem error                // why nothing persists; nil while persisting
	lastLog string               // the last problem logged, to log each once
	commits uint64               // committed by earlier stores
	closed  bool
	stop    chan struct{} // ends the recheck loop
	done    chan struct{} // closed when the loop has ended
}

// fileIdentity tells one file from another that took its name.
type fileIdentity struct{ dev, ino uint64 }

func identityOf(path string) (fileIdentity, error) {
	st, err := os.Stat(path)
	if err != nil {
		return fileIdentity{}, err
	}
	sys, ok := st.Sys().(*syscall.Stat_t)
	if !ok {
		return fileIdentity{}, fmt.Errorf("stat %s: no device and inode", path)
	}
	return fileIdentity{dev: uint64(sys.Dev), ino: uint64(sys.Ino)}, nil
}

// OpenKeeper opens the DB at path through Open, or runs from memory as
// described on Keeper. Its only error is ErrLocked: another daemon holds
// the DB, and running beside it would corrupt both. The Recovery is Open's.
func OpenKeeper(path string, opts KeeperOptions) (*Keeper, Recovery, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	k := &Keeper{path: path, open: opts.Open, watchFile: opts.Open == nil, log: log, every: opts.Recheck, mem: map[RecordKey]Record{}, dropped: map[RecordKey]bool{}}
	if k.open == nil {
		k.open = Open
	}
	if k.every == 0 {
		k.every = DefaultRecheck
	}
	var rec Recovery
	switch {
	case path == MemoryPath:
		// Asked for: no problem to report.
		s, _, err := Open(MemoryPath, Options{Logger: log})
		if err != nil {
			return nil, Recovery{}, err
		}
		k.store = s
		return k, Recovery{}, nil
	case opts.Unusable != nil:
		k.permanent = true
		k.fallBack(opts.Unusable, "")
	default:
		s, r, err := k.open(path, Options{Logger: log})
		switch {
		case err == nil:
			rec = r
			if err := k.adopt(s); err != nil {
				s.Close()
				k.fallBack(err, "")
			}
		case errors.Is(err, ErrLocked):
			return nil, Recovery{}, err
		case errors.Is(err, ErrSchemaTooNew):
			// A firmware downgrade: the newer DB must survive for the
			// next upgrade. Nothing this build does can change that.
			k.permanent = true
			k.fallBack(err, "")
		default:
			k.fallBack(err, k.loadReadOnly())
		}
	}
	if k.permanent {
		k.every = 0
	}
	if k.every > 0 {
		k.stop, k.done = make(chan struct{}), make(chan struct{})
		go k.recheckLoop(k.every)
	}
	return k, rec, nil
}

// adopt makes s the store: its records become the memory copy.
func (k *Keeper) adopt(s *Store) error {
	recs, err := s.Records()
	if err != nil {
		return err
	}
	id, err := k.identity()
	if err != nil {
		return fmt.Errorf("persist: the DB file vanished as it was opened: %w", err)
	}
	k.store, k.ident = s, id
	clear(k.mem)
	for _, r := range recs {
		k.mem[r.Key()] = r
	}
	return nil
}

// fallBack switches to memory for reason; loaded says what was read from
// the file, if anything. Called with mu held (or before k is shared).
func (k *Keeper) fallBack(reason error, loaded string) {
	k.problem = reason
	args := []any{"db", k.path, "err", reason.Error(), "retry", k.retryText()}
	if loaded != "" {
		args = append(args, "loaded", loaded)
	}
	k.log.Error("allocation DB location is not usable; running without persistence, from memory: units allocated now do not survive a reboot until it is usable", args...)
	k.lastLog = reason.Error()
}

// loadReadOnly fills memory from the file at path without writing to it,
// for a location that can be read but not written (a read-only mount, a
// write-protected disk): the units allocated before then stay the same
// for this boot. It returns what it did, for the log.
func (k *Keeper) loadReadOnly() string {
	recs, err := readOnlyRecords(k.path, k.log)
	if errors.Is(err, fs.ErrNotExist) {
		return ""
	}
	if err != nil {
		return "nothing: the file cannot be read either: " + err.Error()
	}
	for _, r := range recs {
		k.mem[r.Key()] = r
	}
	return fmt.Sprintf("%d records from the existing file, read-only", len(recs))
}

// readOnlyRecords reads every record of the DB at path through a
// read-only descriptor and mapping, after the same structure check Open
// makes (bbolt trusts its file; see preflight.go).
func readOnlyRecords(path string, log *slog.Logger) (recs []Record, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if err := preflight(f, st.Size()); err != nil {
		return nil, fmt.Errorf("%w: structure check: %w", ErrCorrupt, err)
	}
	opts := boltOptions(f)
	opts.ReadOnly = true
	var db *bolt.DB
	if err := runGuarded("opening read-only", func() (err error) {
		db, err = bolt.Open(path, fileMode, opts)
		return err
	}); err != nil {
		return nil, err
	}
	defer closeBolt(db)
	err = runGuarded("reading read-only", func() error {
		return db.View(func(tx *bolt.Tx) error {
			version, err := readSchema(tx)
			if err != nil {
				return fmt.Errorf("%w: %w", ErrCorrupt, err)
			}
			if version > SchemaVersion {
				return fmt.Errorf("%w: schema %d", ErrSchemaTooNew, version)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	b := &boltBackend{db: db, path: path}
	err = runGuarded("reading read-only", func() (err error) {
		recs, err = b.records(log)
		return err
	})
	return recs, err
}

func (k *Keeper) recheckLoop(every time.Duration) {
	defer close(k.done)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-k.stop:
			return
		case <-t.C:
			k.Recheck()
		}
	}
}

// Recheck looks at the DB location now: running from memory, it tries to
// open the DB and, if that works, writes every record to it; persisting,
// it makes sure the file at path is still the one it writes.
func (k *Keeper) Recheck() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed || k.permanent || k.path == MemoryPath {
		return
	}
	if k.store == nil {
		k.reopen("the DB location is usable again")
		return
	}
	k.checkIdentity()
}

// identity is that of the file at path, or the zero identity for a store
// whose file is not watched (KeeperOptions.Open).
func (k *Keeper) identity() (fileIdentity, error) {
	if !k.watchFile {
		return fileIdentity{}, nil
	}
	return identityOf(k.path)
}

// checkIdentity rewrites the file from memory if it is no longer the one
// the store has open. Called with mu held, while persisting.
func (k *Keeper) checkIdentity() {
	if !k.watchFile {
		return
	}
	id, err := identityOf(k.path)
	if err == nil && id == k.ident {
		return
	}
	what := "replaced by another file"
	if errors.Is(err, fs.ErrNotExist) {
		what = "deleted"
	} else if err != nil {
		what = "unreadable (" + err.Error() + ")"
	}
	k.log.Error("allocation DB file was "+what+" while ifmgrd ran; writing a new one from memory", "db", k.path, "records", len(k.mem))
	k.commits += k.store.Commits()
	k.store.Close() // the old inode: nothing there is reachable any more
	k.store = nil
	// Everything in memory goes to the new file; the replaced file's
	// content is not merged (memory wins, see Keeper).
	k.reopen("the allocation DB file was " + what)
}

// reopen opens path and writes memory to it, or stays in memory saying
// why. Called with mu held and store nil.
func (k *Keeper) reopen(why string) {
	s, _, err := k.open(k.path, Options{Logger: k.log})
	if err == nil {
		err = k.writeBack(s)
		if err != nil {
			s.Close()
		}
	}
	if err != nil {
		k.problem = err
		if err.Error() != k.lastLog { // once per change, not per attempt
			k.log.Error("allocation DB location is still not usable: running from memory", "db", k.path, "err", err.Error())
			k.lastLog = err.Error()
		}
		return
	}
	k.problem, k.lastLog = nil, ""
	k.log.Warn("allocation DB written from memory; persisting again", "db", k.path, "why", why, "records", len(k.mem))
}

// writeBack makes the file s has open hold what memory holds, in one
// commit, and adopts s. Records only the file has are kept (they are
// reservations this boot never saw, say of hardware that is absent),
// unless memory deleted them or holds their identity under another unit.
func (k *Keeper) writeBack(s *Store) error {
	onFile, err := s.Records()
	if err != nil {
		return err
	}
	ids := map[string]RecordKey{}
	for key, r := range k.mem {
		ids[r.Identity.Key()] = key
	}
	var puts []Record
	var dels []RecordKey
	have := map[RecordKey]Record{}
	for _, r := range onFile {
		key := r.Key()
		have[key] = r
		if _, inMem := k.mem[key]; inMem {
			continue
		}
		if other, ok := ids[r.Identity.Key()]; k.dropped[key] || (ok && other != key) {
			dels = append(dels, key)
			continue
		}
		k.mem[key] = r
	}
	for _, key := range slices.SortedFunc(maps.Keys(k.mem), compareKeys) {
		if r := k.mem[key]; have[key] != r {
			puts = append(puts, r)
		}
	}
	if err := s.Apply(puts, dels); err != nil {
		return err
	}
	id, err := k.identity()
	if err != nil {
		return fmt.Errorf("persist: the DB file vanished as it was written: %w", err)
	}
	k.store, k.ident = s, id // its Commits count the write-back
	clear(k.dropped)
	return nil
}

func compareKeys(x, y RecordKey) int {
	return cmp.Or(cmp.Compare(x.Cloner, y.Cloner), cmp.Compare(x.Unit, y.Unit))
}

// Records returns every record, sorted by cloner then unit.
func (k *Keeper) Records() ([]Record, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return nil, ErrClosed
	}
	out := make([]Record, 0, len(k.mem))
	for _, key := range slices.SortedFunc(maps.Keys(k.mem), compareKeys) {
		out = append(out, k.mem[key])
	}
	return out, nil
}

// Apply commits the batch to the file (after making sure the file is still
// the one at path) and then to memory; while running from memory, to
// memory only. See Keeper for what a nil error promises in each mode.
func (k *Keeper) Apply(puts []Record, dels []RecordKey) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	for _, r := range puts {
		if err := validKey(r.Key()); err != nil {
			return err
		}
	}
	for _, key := range dels {
		if err := validKey(key); err != nil {
			return err
		}
	}
	if k.store != nil && k.path != MemoryPath {
		k.checkIdentity()
	}
	if k.store != nil {
		if err := k.store.Apply(puts, dels); err != nil {
			return err
		}
	}
	for _, key := range dels {
		delete(k.mem, key)
		if k.store == nil {
			k.dropped[key] = true
		}
	}
	for _, r := range puts {
		k.mem[r.Key()] = r
		delete(k.dropped, r.Key())
	}
	return nil
}

// Commits counts the commits made to DB files since OpenKeeper (none while
// running from memory).
func (k *Keeper) Commits() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.store == nil {
		return k.commits
	}
	return k.commits + k.store.Commits()
}

// Path is where the records live now: the DB path, or MemoryPath while
// running from memory.
func (k *Keeper) Path() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.store == nil {
		return MemoryPath
	}
	return k.store.Path()
}

// Size is the DB file's size, 0 while running from memory.
func (k *Keeper) Size() int64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.store == nil {
		return 0
	}
	return k.store.Size()
}

// Problem says why nothing persists ("" while persisting, or when memory
// was asked for with MemoryPath).
func (k *Keeper) Problem() string {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.problem == nil {
		return ""
	}
	return fmt.Sprintf("running from memory, units allocated now are lost at reboot: %v (%s)", k.problem, k.retryText())
}

func (k *Keeper) retryText() string {
	switch {
	case k.permanent:
		return "not retried by this firmware"
	case k.every > 0:
		return fmt.Sprintf("retried every %v and at `ifctl resync`", k.every)
	}
	return "retried at `ifctl resync`"
}

// Close stops the background check and closes the file.
func (k *Keeper) Close() error {
	if k.stop != nil {
		close(k.stop)
		<-k.done
		k.stop = nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return ErrClosed
	}
	k.closed = true
	if k.store == nil {
		return nil
	}
	return k.store.Close()
}
