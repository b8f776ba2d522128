package persist

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"
)

const (
	// lockTimeout turns a second daemon into a clear ErrLocked instead of
	// a hang at boot.
	lockTimeout = time.Second
	// initialMmapSize only needs to cover a typical DB (a few hundred
	// records fit in a few pages). Mappings are address space, and 32-bit
	// MIPS gives bbolt at most 1 GiB of it, so never make this large.
	initialMmapSize = 64 << 10
	// pageSize is fixed rather than the kernel's: some MIPS and ARM kernels
	// run 16 or 64 KiB pages, and every commit rewrites whole pages to flash.
	pageSize = 4096
	// keepCorrupt bounds the damaged files kept for diagnosis.
	keepCorrupt = 3
	fileMode    = 0o600
	dirMode     = 0o700
)

// boltOptions opens bbolt on f, a file we already opened and flock()ed:
// holding our own lock lets preflight and recovery run with the lock held,
// and bbolt's flock on the same open file description succeeds at once.
//
// NoFreelistSync stays false although it would save one page write per
// commit: without a synced freelist, bbolt.Open rebuilds it with a tree walk
// that panics on a goroutine of its own when the tree is damaged, which no
// recover can catch. Commits are rare (interface creation), so the extra
// page is cheap; a crash loop at boot is not.
func boltOptions(f *os.File) *bolt.Options {
	used := false
	return &bolt.Options{
		Timeout:         lockTimeout,
		InitialMmapSize: initialMmapSize,
		PageSize:        pageSize,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  false,
		OpenFile: func(name string, flag int, mode os.FileMode) (*os.File, error) {
			if used {
				return nil, fmt.Errorf("persist: bbolt reopened %s", name)
			}
			used = true
			return f, nil
		},
	}
}

type boltBackend struct {
	db   *bolt.DB
	path string
}

// openBolt opens path, recovering from a damaged file as described in the
// package comment.
func openBolt(path string, log *slog.Logger) (*boltBackend, Recovery, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, Recovery{}, unwritable(path, err)
	}
	// access(2) also reports a read-only mount (EROFS), which permission
	// bits do not show, and is what matters when running as root.
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return nil, Recovery{}, unwritable(path, &fs.PathError{Op: "access", Path: dir, Err: err})
	}

	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, fs.ErrNotExist) {
		db, err := createFresh(path, log)
		if err != nil {
			return nil, Recovery{}, err
		}
		return &boltBackend{db: db, path: path}, Recovery{}, nil
	}
	if err != nil {
		if errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS) {
			return nil, Recovery{}, unwritable(path, err)
		}
		return nil, Recovery{}, fmt.Errorf("persist: opening DB: %w", err)
	}
	if err := lockFile(f, lockTimeout); err != nil {
		f.Close()
		return nil, Recovery{}, fmt.Errorf("%w: %s (waited %v): %w", ErrLocked, path, lockTimeout, err)
	}

	db, version, reason := openChecked(f)
	var tooNew error
	switch {
	case errors.Is(reason, errFormatTooNew):
		tooNew = reason
	case reason == nil && version > SchemaVersion:
		tooNew = fmt.Errorf("schema %d, this build knows up to %d", version, SchemaVersion)
	}
	if tooNew != nil {
		if db != nil {
			closeBolt(db)
		}
		f.Close()
		return nil, Recovery{}, fmt.Errorf("%w: %s: %w (firmware downgrade?); left untouched", ErrSchemaTooNew, path, tooNew)
	}
	if reason == nil && version < SchemaVersion {
		reason = runGuarded("migrating", func() error {
			return db.Update(func(tx *bolt.Tx) error { return migrate(tx, version, SchemaVersion, migrations) })
		})
	}
	if reason == nil {
		return &boltBackend{db: db, path: path}, Recovery{}, nil
	}

	// Damaged. Keep the lock while moving the file so no other opener
	// sees it half-handled, then let go of the old inode.
	cause := reason
	reason = fmt.Errorf("%w: %w", ErrCorrupt, cause)
	movedTo, mvErr := moveAside(path, log)
	if db != nil {
		closeBolt(db)
	}
	// bbolt's Open leaks its DB on a panic (file, flock, mmap). The file is
	// ours, so closing it here drops the lock; the leaked mapping still pins
	// the old inode, which is one reason the fresh DB is a new file (new
	// inode) rather than the old one truncated and reused.
	f.Close()
	if mvErr != nil {
		return nil, Recovery{}, fmt.Errorf("persist: %s is damaged (%v) and could not be moved aside: %w", path, reason, mvErr)
	}
	db, err = createFresh(path, log)
	if err != nil {
		return nil, Recovery{}, fmt.Errorf("persist: %s was damaged (%v, moved to %s); creating a new one: %w", path, reason, movedTo, err)
	}
	log.Error("persist: DB file was damaged; moved it aside and started an empty DB",
		"path", path, "reason", cause.Error(), "moved_to", movedTo)
	return &boltBackend{db: db, path: path}, Recovery{Reason: reason, MovedTo: movedTo}, nil
}

// openChecked runs every check an existing file must pass. reason != nil
// means the file is damaged; db may then be nil, or open and to be closed.
func openChecked(f *os.File) (db *bolt.DB, version uint32, reason error) {
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if err := preflight(f, st.Size()); err != nil {
		return nil, 0, fmt.Errorf("structure check: %w", err)
	}
	err = runGuarded("opening", func() (err error) {
		db, err = bolt.Open(f.Name(), fileMode, boltOptions(f))
		return err
	})
	if err != nil {
		return nil, 0, fmt.Errorf("bbolt open: %w", err)
	}
	err = runGuarded("verifying", func() error {
		return db.View(func(tx *bolt.Tx) error {
			if tx.Size() > st.Size() {
				return fmt.Errorf("file is %d bytes but bbolt uses %d", st.Size(), tx.Size())
			}
			var err error
			if version, err = readSchema(tx); err != nil {
				return err
			}
			if version > SchemaVersion {
				return nil // not ours to judge; Open refuses it
			}
			if tx.Bucket(bucketUnits) == nil {
				return errors.New(`bucket "units" is missing`)
			}
			var sum uint32
			return walk(tx.Cursor(), func(k, v []byte) { sum = crc32.Update(crc32.Update(sum, crc32.IEEETable, k), crc32.IEEETable, v) }, 0)
		})
	})
	if err != nil || version > SchemaVersion {
		return db, version, err
	}
	// Safe to run only because preflight has checked every page it reads:
	// tx.Check works on its own goroutine, out of our recover's reach.
	err = runGuarded("checking", func() error {
		return db.View(func(tx *bolt.Tx) error {
			var errs []error
			for err := range tx.Check() {
				errs = append(errs, err)
			}
			if len(errs) > 0 {
				return fmt.Errorf("bbolt tx.Check: %w", errors.Join(errs[:min(len(errs), 3)]...))
			}
			return nil
		})
	})
	return db, version, err
}

// walk reads every key and value in the tree so that any page bbolt cannot
// read fails here, under recover, rather than later in ifmgr.
func walk(c *bolt.Cursor, touch func(k, v []byte), depth int) error {
	if depth > maxTreeDepth {
		return errors.New("buckets nested too deep")
	}
	for k, v := c.First(); k != nil; k, v = c.Next() {
		touch(k, v)
		if v == nil {
			b := c.Bucket().Bucket(k)
			if b == nil {
				return fmt.Errorf("nested bucket %q cannot be opened", k)
			}
			if err := walk(b.Cursor(), touch, depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func readSchema(tx *bolt.Tx) (uint32, error) {
	meta := tx.Bucket(bucketMeta)
	if meta == nil {
		return 0, errors.New(`bucket "meta" is missing`)
	}
	v := meta.Get(keySchema)
	if len(v) != 4 {
		return 0, fmt.Errorf("meta/schema is %d bytes, want 4", len(v))
	}
	version := binary.BigEndian.Uint32(v)
	if version == 0 {
		return 0, errors.New("meta/schema is 0")
	}
	return version, nil
}

// runGuarded runs fn with memory faults turned into panics (a truncated
// mmapped file raises SIGBUS) and panics turned into errors.
func runGuarded(what string, fn func() error) (err error) {
	old := debug.SetPanicOnFault(true)
	defer func() {
		debug.SetPanicOnFault(old)
		if r := recover(); r != nil {
			err = fmt.Errorf("bbolt panicked while %s: %s", what, describePanic(r))
		}
	}()
	return fn()
}

func closeBolt(db *bolt.DB) {
	_ = runGuarded("closing", db.Close)
}

// createFresh creates an empty DB at path. It is built under path+".new"
// and renamed into place, so a power cut never leaves a file at path that
// lacks the schema (which the next boot would have to treat as damage).
// The flock on the ".new" file keeps two daemons from building it at once.
func createFresh(path string, log *slog.Logger) (*bolt.DB, error) {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE, fileMode)
	if err != nil {
		return nil, unwritable(path, err)
	}
	if err := lockFile(f, lockTimeout); err != nil {
		f.Close()
		return nil, fmt.Errorf("%w: %s (waited %v): %w", ErrLocked, tmp, lockTimeout, err)
	}
	// bbolt names its file in every I/O error (the *os.File's name), and
	// this one is renamed to path below: give bbolt a descriptor that
	// bears the final name, or years of errors would name a file that no
	// longer exists. The duplicate shares the open file and its flock.
	if f, err = renamed(f, path); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("persist: creating %s: %w", path, err)
	}
	fail := func(err error) (*bolt.DB, error) {
		f.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("persist: creating %s: %w", path, err)
	}
	if err := f.Truncate(0); err != nil { // left over from a power cut
		return fail(err)
	}
	db, err := bolt.Open(path, fileMode, boltOptions(f))
	if err != nil {
		return fail(err)
	}
	if err := db.Update(initSchema); err != nil {
		db.Close()
		return fail(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		db.Close()
		return fail(err)
	}
	syncDir(filepath.Dir(path), log)
	return db, nil
}

// renamed returns f's open file under another name and closes f.
func renamed(f *os.File, name string) (*os.File, error) {
	defer f.Close()
	raw, err := f.SyscallConn()
	if err != nil {
		return nil, err
	}
	fd, dupErr := -1, error(nil)
	if err := raw.Control(func(old uintptr) { fd, dupErr = unix.FcntlInt(old, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return nil, err
	}
	if dupErr != nil {
		return nil, fmt.Errorf("dup %s: %w", f.Name(), dupErr)
	}
	return os.NewFile(uintptr(fd), name), nil
}

// moveAside renames the damaged file to "<path>.corrupt-<N>" with N one
// above any existing one, then deletes all but the newest keepCorrupt.
func moveAside(path string, log *slog.Logger) (string, error) {
	olds := corruptFiles(path)
	n := uint64(1)
	if len(olds) > 0 {
		n = olds[len(olds)-1].n + 1
	}
	var dst string
	for ; ; n++ {
		dst = path + ".corrupt-" + strconv.FormatUint(n, 10)
		if _, err := os.Lstat(dst); errors.Is(err, fs.ErrNotExist) {
			break
		}
	}
	if err := os.Rename(path, dst); err != nil {
		return "", err
	}
	syncDir(filepath.Dir(path), log)
	olds = corruptFiles(path)
	for len(olds) > keepCorrupt {
		if err := os.Remove(olds[0].name); err != nil {
			log.Warn("persist: cannot delete old damaged DB", "path", olds[0].name, "err", err)
		}
		olds = olds[1:]
	}
	return dst, nil
}

type corruptFile struct {
	name string
	n    uint64
}

// corruptFiles lists path's ".corrupt-N" files, oldest (lowest N) first.
func corruptFiles(path string) []corruptFile {
	dir, base := filepath.Split(path)
	ents, _ := os.ReadDir(filepath.Clean(dir + "."))
	prefix := base + ".corrupt-"
	var out []corruptFile
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), prefix)
		if !ok {
			continue
		}
		if n, err := strconv.ParseUint(rest, 10, 64); err == nil {
			out = append(out, corruptFile{filepath.Join(dir, e.Name()), n})
		}
	}
	slices.SortFunc(out, func(a, b corruptFile) int { return cmp.Compare(a.n, b.n) })
	return out
}

// syncDir makes renames in dir durable: without it a power cut can undo
// the rename of a new DB or of a damaged one. A failure only costs that
// durability (the next boot redoes the work), so it is logged, not returned.
func syncDir(dir string, log *slog.Logger) {
	d, err := os.Open(dir)
	if err == nil {
		err = d.Sync()
		d.Close()
	}
	if err != nil && !errors.Is(err, syscall.EINVAL) { // some filesystems cannot fsync a directory
		log.Warn("persist: cannot sync directory", "dir", dir, "err", err)
	}
}

func unwritable(path string, err error) error {
	return fmt.Errorf("%w: %s: %w", ErrUnwritable, path, err)
}

// lockFile takes an exclusive flock, retrying until timeout. flock locks
// belong to the open file description, so this also excludes a second
// Store in the same process.
func lockFile(f *os.File, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, unix.EINTR):
			continue
		case !errors.Is(err, unix.EWOULDBLOCK):
			return fmt.Errorf("flock: %w", err)
		case time.Now().After(deadline):
			return errors.New("another holder did not release it")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func fileSize(path string) int64 {
	st, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return st.Size()
}

func (b *boltBackend) records(log *slog.Logger) ([]Record, error) {
	var out []Record
	err := b.db.View(func(tx *bolt.Tx) error {
		units := tx.Bucket(bucketUnits)
		if units == nil {
			return fmt.Errorf("%w: bucket \"units\" is missing", ErrCorrupt)
		}
		return units.ForEach(func(cloner, v []byte) error {
			cb := units.Bucket(cloner)
			if v != nil || cb == nil {
				warnSkipped(log, string(cloner), nil, errors.New("entry in units/ is not a cloner bucket"))
				return nil
			}
			return cb.ForEach(func(k, v []byte) error {
				r, err := decodeRecord(string(cloner), k, v)
				if err != nil {
					warnSkipped(log, string(cloner), k, err)
					return nil
				}
				out = append(out, r)
				return nil
			})
		})
	})
	return out, err
}

func (b *boltBackend) get(k RecordKey, log *slog.Logger) (rec Record, found bool, err error) {
	err = b.db.View(func(tx *bolt.Tx) error {
		units := tx.Bucket(bucketUnits)
		if units == nil {
			return fmt.Errorf("%w: bucket \"units\" is missing", ErrCorrupt)
		}
		cb := units.Bucket([]byte(k.Cloner))
		if cb == nil {
			return nil
		}
		key := unitKey(k.Unit)
		v := cb.Get(key)
		if v == nil {
			return nil
		}
		var err error
		if rec, err = decodeRecord(k.Cloner, key, v); err != nil {
			warnSkipped(log, k.Cloner, key, err)
			return nil
		}
		found = true
		return nil
	})
	return rec, found, err
}

func (b *boltBackend) apply(puts []Record, dels []RecordKey) error {
	return b.db.Update(func(tx *bolt.Tx) error {
		units := tx.Bucket(bucketUnits)
		if units == nil {
			return fmt.Errorf("%w: bucket \"units\" is missing", ErrCorrupt)
		}
		for _, k := range dels {
			cb := units.Bucket([]byte(k.Cloner))
			if cb == nil {
				continue
			}
			if err := cb.Delete(unitKey(k.Unit)); err != nil {
				return err
			}
			// Drop empty cloner buckets so names that are gone do not
			// linger in the file forever.
			if first, _ := cb.Cursor().First(); first == nil {
				if err := units.DeleteBucket([]byte(k.Cloner)); err != nil {
					return err
				}
			}
		}
		for _, r := range puts {
			cb, err := units.CreateBucketIfNotExists([]byte(r.Cloner))
			if err != nil {
				return err
			}
			if err := cb.Put(unitKey(r.Unit), encodeRecord(r)); err != nil {
				return err
			}
		}
		return nil
	})
}

func (b *boltBackend) size() int64 { return fileSize(b.path) }

func (b *boltBackend) close() error { return b.db.Close() }
