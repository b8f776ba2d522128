package persist

import (
	"cmp"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// The mirrored store: bbolt in RAM, snapshots on flash.
//
// bbolt cannot map its file on JFFS2 (docs/flash.md), and JFFS2 on a
// small NOR partition is what most cheap routers have. OpenMirrored keeps
// bbolt as the store (reads, the single-owner contract, the same Recovery
// and errors) but puts its file in RAM (a tmpfs) and makes every commit
// durable on flash first, as a whole-state snapshot:
//
//	write  <snap>.new   header + records, then fsync
//	rename <snap>.new -> <snap>, then fsync the directory
//	apply the batch to bbolt in RAM
//
// Apply returns only after the rename is durable, so ifmgr (which commits
// before it creates a link or answers a client) never confirms what the
// flash does not hold. At Open the RAM file is rebuilt from the newest
// whole snapshot. A snapshot is whole when its CRC32C over header and
// records checks and its length is what the header says; between <snap>
// and a <snap>.new left by a power cut, the whole one with the higher
// generation wins, so a torn snapshot never wins over a whole one. (A
// whole <snap>.new newer than <snap> is a commit that was written but not
// yet confirmed; taking it is as correct as not. It is renamed into place
// at Open, so the next commit's <snap>.new never replaces the only copy of
// what was loaded.)
//
// Flash bytes per commit are one snapshot (every record, ~100 bytes each,
// before JFFS2's compression and node headers). Nothing else is written:
// no commit, no write, so flaps and replugs of known hardware cost zero.
//
// # Snapshot format (big-endian)
//
//	[0:6]   "uRsnap"
//	[6:8]   format version (snapshotFormat)
//	[8:16]  generation, 1 for the first commit, +1 per commit
//	[16:20] length of the records that follow
//	[20:24] CRC32C of bytes [0:20] and of the records
//	[24:]   JSON array of Record, sorted by cloner then unit

const (
	snapshotMagic  = "uRsnap"
	snapshotFormat = 1
	snapshotHeader = 24
	// maxSnapshot bounds what Open reads, so a garbage length cannot make a
	// router allocate gigabytes at boot. 4000 interfaces take ~400 KB.
	maxSnapshot = 16 << 20
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// snapshot is one decoded snapshot file.
type snapshot struct {
	gen  uint64
	recs []Record
}

// encodeSnapshot lays out recs (sorted) as a snapshot of generation gen.
func encodeSnapshot(gen uint64, recs []Record) []byte {
	body := make([]json.RawMessage, len(recs))
	for i, r := range recs {
		body[i] = encodeRecord(r)
	}
	payload, err := json.Marshal(body)
	if err != nil {
		panic(fmt.Sprintf("persist: encoding snapshot: %v", err)) // raw JSON of records: cannot fail
	}
	buf := make([]byte, snapshotHeader, snapshotHeader+len(payload))
	copy(buf, snapshotMagic)
	binary.BigEndian.PutUint16(buf[6:], snapshotFormat)
	binary.BigEndian.PutUint64(buf[8:], gen)
	binary.BigEndian.PutUint32(buf[16:], uint32(len(payload)))
	crc := crc32.Update(crc32.Checksum(buf[:20], castagnoli), castagnoli, payload)
	binary.BigEndian.PutUint32(buf[20:], crc)
	return append(buf, payload...)
}

// errSnapshotTooNew marks a snapshot of a newer format (a firmware
// downgrade); like a bbolt file of a newer schema it is left untouched.
var errSnapshotTooNew = errors.New("snapshot format is newer than this build")

// decodeSnapshot checks and decodes one snapshot file's bytes. Any error
// but errSnapshotTooNew means the file is torn or damaged.
func decodeSnapshot(b []byte) (snapshot, error) {
	if len(b) < snapshotHeader {
		return snapshot{}, fmt.Errorf("%d bytes, shorter than the %d-byte header", len(b), snapshotHeader)
	}
	if string(b[:6]) != snapshotMagic {
		return snapshot{}, fmt.Errorf("no snapshot magic (starts %q)", b[:6])
	}
	if v := binary.BigEndian.Uint16(b[6:]); v != snapshotFormat {
		if v > snapshotFormat {
			return snapshot{}, fmt.Errorf("%w: format %d, this build knows %d", errSnapshotTooNew, v, snapshotFormat)
		}
		return snapshot{}, fmt.Errorf("unknown snapshot format %d", v)
	}
	n := binary.BigEndian.Uint32(b[16:])
	if int64(len(b)-snapshotHeader) != int64(n) {
		return snapshot{}, fmt.Errorf("header says %d bytes of records, file has %d (torn write)", n, len(b)-snapshotHeader)
	}
	payload := b[snapshotHeader:]
	crc := crc32.Update(crc32.Checksum(b[:20], castagnoli), castagnoli, payload)
	if want := binary.BigEndian.Uint32(b[20:]); crc != want {
		return snapshot{}, fmt.Errorf("CRC32C %#08x, header says %#08x (torn or damaged)", crc, want)
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(payload, &raw); err != nil {
		return snapshot{}, fmt.Errorf("records: %w", err)
	}
	s := snapshot{gen: binary.BigEndian.Uint64(b[8:]), recs: make([]Record, 0, len(raw))}
	seen := make(map[RecordKey]bool, len(raw))
	for i, v := range raw {
		var r Record
		if err := json.Unmarshal(v, &r); err != nil {
			return snapshot{}, fmt.Errorf("record %d: %w", i, err)
		}
		if err := validKey(r.Key()); err != nil {
			return snapshot{}, fmt.Errorf("record %d: %w", i, err)
		}
		if seen[r.Key()] {
			return snapshot{}, fmt.Errorf("record %d: %s/%d stored twice", i, r.Cloner, r.Unit)
		}
		seen[r.Key()] = true
		s.recs = append(s.recs, r)
	}
	return s, nil
}

// readSnapshot reads and decodes path; found is false if it does not exist.
func readSnapshot(path string) (s snapshot, found bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return snapshot{}, false, nil
	}
	if err != nil {
		return snapshot{}, true, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return snapshot{}, true, err
	}
	if st.Size() > maxSnapshot {
		return snapshot{}, true, fmt.Errorf("%d bytes, over the %d-byte bound", st.Size(), maxSnapshot)
	}
	b := make([]byte, st.Size())
	if _, err := f.ReadAt(b, 0); err != nil && st.Size() > 0 {
		return snapshot{}, true, fmt.Errorf("read: %w", err)
	}
	s, err = decodeSnapshot(b)
	return s, true, err
}

// MirrorStats counts what the mirrored store wrote to flash since Open.
type MirrorStats struct {
	Generation uint64 // of the newest snapshot on flash (0: none yet)
	Snapshots  uint64 // snapshots written since Open
	Bytes      uint64 // bytes of those snapshots
}

// mirrorBackend is bbolt in RAM (work) with snapshots on flash (snap).
type mirrorBackend struct {
	work    *boltBackend
	snap    string
	dirLock *os.File // flock()ed snapshot directory: one store per snapshot
	log     *slog.Logger
	gen     atomic.Uint64
	written atomic.Uint64
	bytes   atomic.Uint64
}

// OpenMirrored opens the mirrored store (see above): snapshots at
// snapPath, which may be on any file system that supports rename and
// fsync (JFFS2 included), and bbolt's working file at workPath, which
// should be in RAM; it is replaced by the snapshot's content at every
// Open. Path returns snapPath. Errors and Recovery mean what they do for
// Open: damaged snapshots (none whole) are moved aside to
// "<snapPath>.corrupt-N" and the store starts empty with a Recovery.
func OpenMirrored(snapPath, workPath string, opts Options) (*Store, Recovery, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	dir := filepath.Dir(snapPath)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, Recovery{}, unwritable(snapPath, err)
	}
	if err := unix.Access(dir, unix.W_OK|unix.X_OK); err != nil {
		return nil, Recovery{}, unwritable(snapPath, &fs.PathError{Op: "access", Path: dir, Err: err})
	}
	// flock on the directory: no file is written to flash for the lock.
	d, err := os.Open(dir)
	if err != nil {
		return nil, Recovery{}, unwritable(snapPath, err)
	}
	if err := lockFile(d, lockTimeout); err != nil {
		d.Close()
		return nil, Recovery{}, fmt.Errorf("%w: %s (waited %v): %w", ErrLocked, dir, lockTimeout, err)
	}
	b := &mirrorBackend{snap: snapPath, dirLock: d, log: log}
	fail := func(err error) (*Store, Recovery, error) {
		d.Close()
		return nil, Recovery{}, err
	}

	latest, rec, err := b.load()
	if err != nil {
		return fail(err)
	}
	// The RAM copy is derived: start it afresh from the snapshot.
	for _, p := range []string{workPath, workPath + ".new"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fail(fmt.Errorf("persist: removing the old RAM copy %s: %w", p, err))
		}
	}
	work, _, err := openBolt(workPath, log)
	if err != nil {
		return fail(fmt.Errorf("persist: RAM copy of the DB at %s: %w", workPath, err))
	}
	if len(latest.recs) > 0 {
		if err := work.apply(latest.recs, nil); err != nil {
			work.close()
			return fail(fmt.Errorf("persist: loading snapshot %d into the RAM copy: %w", latest.gen, err))
		}
	}
	b.work = work
	b.gen.Store(latest.gen)
	log.Info("persist: allocation DB in RAM, mirrored to flash", "snapshot", snapPath,
		"generation", latest.gen, "records", len(latest.recs), "ram", workPath)
	return &Store{path: snapPath, log: log, b: b}, rec, nil
}

// load picks the newest whole snapshot of <snap> and <snap>.new. If files
// exist but none is whole, <snap> is moved aside and an empty state with a
// Recovery is returned.
func (b *mirrorBackend) load() (snapshot, Recovery, error) {
	var best snapshot
	var have bool
	var bad []error
	var from string
	for _, p := range []string{b.snap, b.snap + ".new"} {
		s, found, err := readSnapshot(p)
		switch {
		case !found:
		case errors.Is(err, errSnapshotTooNew):
			return snapshot{}, Recovery{}, fmt.Errorf("%w: %s: %w (firmware downgrade?); left untouched", ErrSchemaTooNew, p, err)
		case err != nil:
			bad = append(bad, fmt.Errorf("%s: %w", p, err))
			b.log.Warn("persist: snapshot is not whole; ignored", "path", p, "err", err)
		case !have || s.gen > best.gen:
			best, have, from = s, true, p
		}
	}
	if have && from != b.snap {
		// A whole <snap>.new won (a cut between its fsync and its
		// rename): finish the rename, so that what was loaded is what
		// <snap> holds and the next commit's <snap>.new cannot tear it.
		if err := os.Rename(from, b.snap); err != nil {
			return snapshot{}, Recovery{}, fmt.Errorf("persist: promoting %s: %w", from, err)
		}
		syncDir(filepath.Dir(b.snap), b.log)
		b.log.Info("persist: newer whole snapshot promoted", "from", from, "generation", best.gen)
	}
	if have || len(bad) == 0 {
		return best, Recovery{}, nil
	}
	reason := fmt.Errorf("%w: no whole snapshot: %w", ErrCorrupt, errors.Join(bad...))
	rec := Recovery{Reason: reason}
	if _, err := os.Lstat(b.snap); err == nil {
		moved, err := moveAside(b.snap, b.log)
		if err != nil {
			return snapshot{}, Recovery{}, fmt.Errorf("persist: %s is damaged (%v) and could not be moved aside: %w", b.snap, reason, err)
		}
		rec.MovedTo = moved
	}
	b.log.Error("persist: no whole snapshot on flash; starting empty", "path", b.snap, "reason", reason, "moved_to", rec.MovedTo)
	return snapshot{}, rec, nil
}

func (b *mirrorBackend) records(log *slog.Logger) ([]Record, error) { return b.work.records(log) }

func (b *mirrorBackend) get(k RecordKey, log *slog.Logger) (Record, bool, error) {
	return b.work.get(k, log)
}

// apply writes the state after the batch to flash, then to bbolt.
func (b *mirrorBackend) apply(puts []Record, dels []RecordKey) error {
	cur, err := b.work.records(b.log)
	if err != nil {
		return err
	}
	next := make(map[RecordKey]Record, len(cur)+len(puts))
	for _, r := range cur {
		next[r.Key()] = r
	}
	for _, k := range dels {
		delete(next, k)
	}
	for _, r := range puts {
		next[r.Key()] = r
	}
	recs := slices.SortedFunc(func(yield func(Record) bool) {
		for _, r := range next {
			if !yield(r) {
				return
			}
		}
	}, compareRecords)
	gen := b.gen.Load() + 1
	n, err := b.writeSnapshot(gen, recs)
	if err != nil {
		return fmt.Errorf("persist: snapshot %d to %s: %w", gen, b.snap, err)
	}
	b.gen.Store(gen)
	b.written.Add(1)
	b.bytes.Add(uint64(n))
	b.log.Info("persist: snapshot written", "generation", gen, "records", len(recs), "bytes", n)
	if err := b.work.apply(puts, dels); err != nil {
		// The flash holds the batch, RAM does not: the next Open (which
		// loads the flash) is right, this process is not.
		return fmt.Errorf("persist: snapshot %d is on flash but the RAM copy failed: %w", gen, err)
	}
	return nil
}

// writeSnapshot writes, fsyncs and renames one snapshot into place and
// makes the rename durable. It returns the bytes written.
func (b *mirrorBackend) writeSnapshot(gen uint64, recs []Record) (int, error) {
	data := encodeSnapshot(gen, recs)
	tmp := b.snap + ".new"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fileMode)
	if err != nil {
		return 0, err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return 0, err
	}
	if err := f.Close(); err != nil {
		return 0, err
	}
	if err := os.Rename(tmp, b.snap); err != nil {
		return 0, err
	}
	// Unlike syncDir, a failure here is the caller's: the client must not
	// hear "done" for a rename the flash may not keep.
	d, err := os.Open(filepath.Dir(b.snap))
	if err != nil {
		return 0, err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, unix.EINVAL) {
		return 0, fmt.Errorf("fsync of the directory: %w", err)
	}
	return len(data), nil
}

func (b *mirrorBackend) size() int64 { return fileSize(b.snap) }

func (b *mirrorBackend) close() error {
	err := b.work.close()
	b.dirLock.Close()
	return err
}

func (b *mirrorBackend) stats() MirrorStats {
	return MirrorStats{Generation: b.gen.Load(), Snapshots: b.written.Load(), Bytes: b.bytes.Load()}
}

// MirrorStats returns the mirrored store's flash writes; ok is false for
// other stores (bbolt on the file system, memory) and closed ones.
func (s *Store) MirrorStats() (st MirrorStats, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.b.(*mirrorBackend)
	if !ok {
		return MirrorStats{}, false
	}
	return m.stats(), true
}

func compareRecords(x, y Record) int {
	return cmp.Or(strings.Compare(x.Cloner, y.Cloner), cmp.Compare(x.Unit, y.Unit))
}
