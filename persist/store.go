package persist

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
)

// MemoryPath runs the store without persistence, for tests and for a router
// whose flash cannot be used; the semantics are those of the file store.
const MemoryPath = ":memory:"

// SchemaVersion is the layout this build writes; see doc.go.
const SchemaVersion = 2

// maxClonerLen bounds cloner names; real ones are short kernel kinds and a
// bound keeps a bad caller from writing huge bucket names to flash.
const maxClonerLen = 255

var (
	// ErrUnwritable means the DB's directory cannot be created or written.
	// The returned error also wraps the OS error.
	ErrUnwritable = errors.New("persist: DB location is not writable")
	// ErrClosed is returned by methods of a closed Store.
	ErrClosed = errors.New("persist: store is closed")
	// ErrSchemaTooNew means the file was written by a newer firmware. Open
	// leaves it untouched so a downgrade does not destroy it.
	ErrSchemaTooNew = errors.New("persist: DB schema is newer than this build")
	// ErrLocked means another process (or another Store in this process)
	// holds the DB open.
	ErrLocked = errors.New("persist: DB is locked by another process")
	// ErrCorrupt marks damage found in a DB file. Open recovers from it (it
	// appears in Recovery.Reason); after Open it is returned by Records or
	// Apply if bbolt fails on the open file, and reopening recovers.
	ErrCorrupt = errors.New("persist: DB file is damaged")
	// ErrInvalidKey rejects records that cannot be addressed (empty or
	// over-long cloner name) before anything is written.
	ErrInvalidKey = errors.New("persist: invalid record key")
)

// Options tunes Open.
type Options struct {
	Logger *slog.Logger // nil = slog.Default()
}

// Recovery describes what Open had to do to a bad DB file. Zero value = nothing.
type Recovery struct {
	Reason  error  // why the file was rejected; wraps ErrCorrupt
	MovedTo string // where the bad file was kept for diagnosis
}

// backend is the storage under a Store. Both implementations hold records
// as JSON so that what a caller reads back is what the file store would give.
type backend interface {
	records(log *slog.Logger) ([]Record, error) // sorted by cloner, unit
	get(k RecordKey, log *slog.Logger) (Record, bool, error)
	apply(puts []Record, dels []RecordKey) error // one atomic, durable commit
	size() int64
	close() error
}

// Store holds the unit allocations. See the package comment for its
// concurrency contract.
type Store struct {
	mu      sync.Mutex
	path    string
	log     *slog.Logger
	b       backend // nil once closed
	commits atomic.Uint64
}

// Open opens or creates the DB at path (or a memory store for MemoryPath).
// A damaged file does not make Open fail: it is moved aside and replaced by
// an empty DB, and the returned Recovery says so. Errors are reserved for
// conditions the caller must act on: ErrUnwritable, ErrLocked,
// ErrSchemaTooNew.
func Open(path string, opts Options) (*Store, Recovery, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &Store{path: path, log: log}
	if path == MemoryPath {
		s.b = newMemBackend()
		return s, Recovery{}, nil
	}
	b, rec, err := openBolt(path, log)
	if err != nil {
		return nil, Recovery{}, err
	}
	s.b = b
	return s, rec, nil
}

// Records returns all records, sorted by cloner then unit. A record that
// cannot be decoded is skipped with a warning: losing one allocation only
// costs a unit renumbering, losing all of them at boot costs every one.
func (s *Store) Records() (recs []Record, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return nil, ErrClosed
	}
	defer guard("reading records", &err)()
	return s.b.records(s.log)
}

// Get returns the record stored under k; found is false if there is none
// (or it cannot be decoded, as in Records).
func (s *Store) Get(k RecordKey) (rec Record, found bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return Record{}, false, ErrClosed
	}
	if err := validKey(k); err != nil {
		return Record{}, false, err
	}
	defer guard("reading a record", &err)()
	return s.b.get(k, s.log)
}

// Apply writes the batch in one durable transaction: when it returns nil the
// records survive a power cut, which is what lets ifmgr create the kernel
// interface afterwards. Deletions are applied before puts, so a key in both
// ends up stored. An empty batch touches nothing (no flash write).
func (s *Store) Apply(puts []Record, dels []RecordKey) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return ErrClosed
	}
	for _, r := range puts {
		if err := validKey(r.Key()); err != nil {
			return err
		}
	}
	for _, k := range dels {
		if err := validKey(k); err != nil {
			return err
		}
	}
	if len(puts) == 0 && len(dels) == 0 {
		return nil
	}
	defer guard("applying a batch", &err)()
	if err := s.b.apply(puts, dels); err != nil {
		return err
	}
	s.commits.Add(1)
	return nil
}

// Commits counts write transactions committed by Apply since Open, so tests
// and `ifctl status` can see how often the flash is written. Writes Open
// itself makes (creation, migration) are not counted.
func (s *Store) Commits() uint64 { return s.commits.Load() }

// Path returns the path given to Open (MemoryPath for the memory store).
func (s *Store) Path() string { return s.path }

// Size returns the DB file size in bytes, 0 for the memory store or if the
// file cannot be stat'ed.
func (s *Store) Size() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		if s.path == MemoryPath {
			return 0
		}
		return fileSize(s.path)
	}
	return s.b.size()
}

// Close releases the file and its lock. Later calls return ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b == nil {
		return ErrClosed
	}
	b := s.b
	s.b = nil
	return b.close()
}

func validKey(k RecordKey) error {
	if k.Cloner == "" || len(k.Cloner) > maxClonerLen {
		return fmt.Errorf("%w: cloner name %q (unit %d)", ErrInvalidKey, k.Cloner, k.Unit)
	}
	return nil
}

// guard turns a panic or memory fault inside bbolt into an ErrCorrupt error
// for the caller: flash can rot under a running daemon, and an error lets
// ifmgr carry on (and the next Open recover) where a crash would not.
// Use as `defer guard(what, &err)()`.
func guard(what string, errp *error) func() {
	old := debug.SetPanicOnFault(true)
	return func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			*errp = fmt.Errorf("%w: bbolt panicked while %s: %s", ErrCorrupt, what, describePanic(r))
		}
	}
}

// describePanic names memory faults as such: Go reports them as a nil
// dereference, which would send whoever reads the log the wrong way.
func describePanic(r any) string {
	if f, ok := r.(interface{ Addr() uintptr }); ok {
		return fmt.Sprintf("memory fault at %#x reading the mapped file (truncated or unreadable flash?): %v", f.Addr(), r)
	}
	return fmt.Sprint(r)
}

func unitKey(unit uint32) []byte {
	return binary.BigEndian.AppendUint32(nil, unit)
}

func encodeRecord(r Record) []byte {
	b, err := json.Marshal(r)
	if err != nil {
		// Record holds only strings and integers; Marshal cannot fail.
		panic(fmt.Sprintf("persist: encoding record: %v", err))
	}
	return b
}

// decodeRecord checks that the stored record is where it claims to be, so
// a misplaced or half-written value is skipped rather than handed out under
// the wrong unit.
func decodeRecord(cloner string, key, val []byte) (Record, error) {
	if len(key) != 4 {
		return Record{}, fmt.Errorf("unit key is %d bytes, want 4", len(key))
	}
	var r Record
	if err := json.Unmarshal(val, &r); err != nil {
		return Record{}, err
	}
	if unit := binary.BigEndian.Uint32(key); r.Cloner != cloner || r.Unit != unit {
		return Record{}, fmt.Errorf("record says %s/%d but is stored at %s/%d", r.Cloner, r.Unit, cloner, unit)
	}
	return r, nil
}

func warnSkipped(log *slog.Logger, cloner string, key []byte, err error) {
	log.Warn("persist: skipping unreadable unit record", "cloner", cloner, "key", fmt.Sprintf("%x", key), "err", err)
}
