package persist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// impl is one Store implementation driven through the same tests.
type impl struct {
	name string
	// open returns a fresh store; reopen closes it and opens the same
	// data again (the memory store has nothing to reopen: it returns nil).
	open   func(t *testing.T) *Store
	reopen func(t *testing.T, s *Store) *Store
}

var impls = []impl{
	{
		name: "memory",
		open: func(t *testing.T) *Store { return mustOpen(t, MemoryPath) },
	},
	{
		name: "bolt",
		open: func(t *testing.T) *Store { return mustOpen(t, filepath.Join(t.TempDir(), "d", "units.db")) },
		reopen: func(t *testing.T, s *Store) *Store {
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			return mustOpen(t, s.Path())
		},
	},
}

func forEachImpl(t *testing.T, fn func(t *testing.T, im impl)) {
	for _, im := range impls {
		t.Run(im.name, func(t *testing.T) { fn(t, im) })
	}
}

func TestRecordsSortedAndReplaced(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		s := im.open(t)
		defer s.Close()
		if got := mustRecords(t, s); len(got) != 0 {
			t.Fatalf("new store has records: %v", got)
		}
		// Units straddle a byte boundary: sorting must be numeric.
		mustApply(t, s, []Record{vlan(3, "eth0", 3), bridge(256), bridge(2), vlan(1, "eth1", 1), bridge(10)}, nil)
		mustApply(t, s, []Record{{Cloner: "bridge", Unit: 2, Identity: Identity{Rule: "lan", PermMAC: "02:00:00:00:00:01"}}}, nil)
		want := []Record{
			{Cloner: "bridge", Unit: 2, Identity: Identity{Rule: "lan", PermMAC: "02:00:00:00:00:01"}},
			bridge(10), bridge(256), vlan(1, "eth1", 1), vlan(3, "eth0", 3),
		}
		if got := mustRecords(t, s); !slices.Equal(got, want) {
			t.Fatalf("Records:\n got %v\nwant %v", got, want)
		}
		r, ok, err := s.Get(RecordKey{"bridge", 256})
		if err != nil || !ok || r != bridge(256) {
			t.Fatalf("Get = %v, %v, %v", r, ok, err)
		}
		if _, ok, err := s.Get(RecordKey{"bridge", 3}); ok || err != nil {
			t.Fatalf("Get(absent) = %v, %v", ok, err)
		}
		if _, ok, err := s.Get(RecordKey{"nosuch", 3}); ok || err != nil {
			t.Fatalf("Get(absent cloner) = %v, %v", ok, err)
		}
		if im.reopen != nil {
			s = im.reopen(t, s)
			if got := mustRecords(t, s); !slices.Equal(got, want) {
				t.Fatalf("Records after reopen:\n got %v\nwant %v", got, want)
			}
		}
	})
}

func TestApplyDeletes(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		s := im.open(t)
		defer s.Close()
		mustApply(t, s, []Record{bridge(1), bridge(2), vlan(5, "eth0", 5)}, nil)
		// Deleting what does not exist is not an error.
		mustApply(t, s, nil, []RecordKey{{"bridge", 1}, {"bridge", 99}, {"gone", 1}})
		// Deletes go first, so a put of the same key wins.
		mustApply(t, s, []Record{vlan(5, "eth1", 6)}, []RecordKey{{"vlan", 5}})
		want := []Record{bridge(2), vlan(5, "eth1", 6)}
		if got := mustRecords(t, s); !slices.Equal(got, want) {
			t.Fatalf("got %v want %v", got, want)
		}
		// Deleting the last unit of a cloner, then using it again.
		mustApply(t, s, nil, []RecordKey{{"bridge", 2}})
		mustApply(t, s, []Record{bridge(7)}, nil)
		want = []Record{bridge(7), vlan(5, "eth1", 6)}
		if got := mustRecords(t, s); !slices.Equal(got, want) {
			t.Fatalf("got %v want %v", got, want)
		}
		if s.Commits() != 5 {
			t.Fatalf("Commits = %d, want 5", s.Commits())
		}
	})
}

func TestApplyBatchIsOneCommit(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		s := im.open(t)
		defer s.Close()
		if s.Commits() != 0 {
			t.Fatalf("fresh store: Commits = %d", s.Commits())
		}
		var puts []Record
		for u := range uint32(1000) {
			puts = append(puts, bridge(u))
		}
		mustApply(t, s, puts, nil)
		if s.Commits() != 1 {
			t.Fatalf("1000 puts: Commits = %d, want 1", s.Commits())
		}
		if got := mustRecords(t, s); !slices.Equal(got, puts) {
			t.Fatalf("got %d records, want the 1000 put", len(got))
		}
		if im.reopen != nil {
			s = im.reopen(t, s)
			if got := mustRecords(t, s); !slices.Equal(got, puts) {
				t.Fatalf("after reopen: got %d records, want the 1000 put", len(got))
			}
			if s.Commits() != 0 {
				t.Fatalf("reopened: Commits = %d, want 0", s.Commits())
			}
		}
	})
}

func TestApplyEmptyWritesNothing(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		s := im.open(t)
		defer s.Close()
		mustApply(t, s, []Record{bridge(1)}, nil)
		var before []byte
		if s.Path() != MemoryPath {
			before = readFile(t, s.Path())
		}
		n := s.Commits()
		mustApply(t, s, nil, nil)
		mustApply(t, s, []Record{}, []RecordKey{})
		if s.Commits() != n {
			t.Fatalf("empty Apply: Commits %d -> %d", n, s.Commits())
		}
		if s.Path() != MemoryPath {
			if after := readFile(t, s.Path()); !bytes.Equal(before, after) {
				t.Fatal("empty Apply changed the file")
			}
		}
	})
}

func TestApplyRejectsBadKeys(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		s := im.open(t)
		defer s.Close()
		for _, tc := range []struct {
			puts []Record
			dels []RecordKey
		}{
			{puts: []Record{bridge(1), {Cloner: "", Unit: 1}}},
			{puts: []Record{{Cloner: strings.Repeat("x", 256)}}},
			{puts: []Record{bridge(1)}, dels: []RecordKey{{"", 4}}},
		} {
			if err := s.Apply(tc.puts, tc.dels); !errors.Is(err, ErrInvalidKey) {
				t.Errorf("Apply(%v, %v) = %v, want ErrInvalidKey", tc.puts, tc.dels, err)
			}
		}
		if _, _, err := s.Get(RecordKey{}); !errors.Is(err, ErrInvalidKey) {
			t.Errorf("Get(empty key) = %v", err)
		}
		if s.Commits() != 0 || len(mustRecords(t, s)) != 0 {
			t.Fatal("a rejected batch was partly written")
		}
	})
}

func TestClosed(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		s := im.open(t)
		mustApply(t, s, []Record{bridge(1)}, nil)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Records(); !errors.Is(err, ErrClosed) {
			t.Errorf("Records after Close: %v", err)
		}
		if _, _, err := s.Get(bridge(1).Key()); !errors.Is(err, ErrClosed) {
			t.Errorf("Get after Close: %v", err)
		}
		if err := s.Apply(nil, nil); !errors.Is(err, ErrClosed) {
			t.Errorf("Apply after Close: %v", err)
		}
		if err := s.Close(); !errors.Is(err, ErrClosed) {
			t.Errorf("second Close: %v", err)
		}
		if s.Commits() != 1 {
			t.Errorf("Commits after Close = %d", s.Commits())
		}
	})
}

// TestGarbageRecordSkipped: one undecodable or misplaced record must not
// hide the others.
func TestGarbageRecordSkipped(t *testing.T) {
	forEachImpl(t, func(t *testing.T, im impl) {
		s := im.open(t)
		good := []Record{bridge(1), bridge(3), vlan(2, "eth0", 2)}
		mustApply(t, s, good, nil)
		bad := map[RecordKey][]byte{
			{"bridge", 2}: []byte("{not json"),
			{"bridge", 4}: []byte(`{"cloner":"bridge","unit":5}`), // claims another unit
			{"vlan", 9}:   []byte(`"a string"`),
		}
		opts, logs := testOptions()
		if s.Path() == MemoryPath {
			mb := s.b.(*memBackend)
			for k, v := range bad {
				mb.m[k] = v
			}
			s.log = opts.Logger
		} else {
			path := s.Path()
			s.Close()
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(tx *bolt.Tx) error {
				units := tx.Bucket(bucketUnits)
				for k, v := range bad {
					cb, _ := units.CreateBucketIfNotExists([]byte(k.Cloner))
					if err := cb.Put(unitKey(k.Unit), v); err != nil {
						return err
					}
				}
				cb := units.Bucket([]byte("bridge"))
				if err := cb.Put([]byte{1, 2}, []byte("{}")); err != nil { // short key
					return err
				}
				return units.Put([]byte("stray"), []byte("value")) // not a bucket
			})
			if err != nil {
				t.Fatal(err)
			}
			db.Close()
			var rec Recovery
			s, rec, err = Open(path, opts)
			if err != nil || rec != (Recovery{}) {
				t.Fatalf("reopen: %v %+v", err, rec)
			}
		}
		defer s.Close()
		if got := mustRecords(t, s); !slices.Equal(got, []Record{bridge(1), bridge(3), vlan(2, "eth0", 2)}) {
			t.Fatalf("Records = %v", got)
		}
		if n := logs.count("level=WARN", "skipping unreadable"); n < len(bad) {
			t.Fatalf("%d warnings logged, want >= %d:\n%s", n, len(bad), logs)
		}
		if _, ok, err := s.Get(RecordKey{"bridge", 2}); ok || err != nil {
			t.Fatalf("Get(garbage) = %v, %v", ok, err)
		}
		// The garbage can be overwritten.
		mustApply(t, s, []Record{bridge(2)}, []RecordKey{{"bridge", 4}, {"vlan", 9}})
		if got := mustRecords(t, s); len(got) != 4 {
			t.Fatalf("after overwrite: %v", got)
		}
	})
}

func TestMemoryStore(t *testing.T) {
	s := mustOpen(t, MemoryPath)
	if s.Path() != MemoryPath || s.Size() != 0 {
		t.Fatalf("Path %q Size %d", s.Path(), s.Size())
	}
	s.Close()
}

func TestFileCreated(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	path := filepath.Join(dir, "units.db")
	s := mustOpen(t, path)
	defer s.Close()
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("dir: %v %v", st.Mode(), err)
	}
	st, err = os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("file: %v %v", st.Mode(), err)
	}
	if s.Size() != st.Size() || s.Size() == 0 {
		t.Fatalf("Size = %d, stat %d", s.Size(), st.Size())
	}
	if _, err := os.Stat(path + ".new"); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("temporary file left behind: %v", err)
	}
	// The schema was written at creation.
	s.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(tx *bolt.Tx) error {
		v, err := readSchema(tx)
		if v != SchemaVersion {
			t.Errorf("schema %d, %v", v, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestUnwritable(t *testing.T) {
	file := filepath.Join(t.TempDir(), "plainfile")
	writeFile(t, file, []byte("x"))
	for _, path := range []string{
		filepath.Join(file, "sub", "units.db"), // parent is a regular file
		filepath.Join(file, "units.db"),
		"/proc/uroute-persist-test/units.db",
	} {
		s, _, err := Open(path, Options{})
		if err == nil {
			s.Close()
			t.Fatalf("Open(%s) succeeded", path)
		}
		var pe *fs.PathError
		if !errors.Is(err, ErrUnwritable) || !errors.As(err, &pe) || !strings.Contains(err.Error(), path) {
			t.Errorf("Open(%s) = %v; want ErrUnwritable wrapping a *fs.PathError and naming the path", path, err)
		}
		t.Logf("%s: %v", path, err)
	}
}

func TestLockedByAnotherStore(t *testing.T) {
	path := filepath.Join(t.TempDir(), "units.db")
	a := mustOpen(t, path)
	mustApply(t, a, []Record{bridge(1)}, nil)
	start := time.Now()
	b, _, err := Open(path, Options{})
	took := time.Since(start)
	if err == nil {
		b.Close()
		t.Fatal("second Open of a locked DB succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("err = %v; want ErrLocked naming the path", err)
	}
	// Only the lower bound is a property; the upper one just catches a hang
	// (machines here are too noisy for a tight timing assertion).
	if took < lockTimeout/2 || took > 30*lockTimeout {
		t.Fatalf("gave up after %v, want about %v", took, lockTimeout)
	}
	t.Logf("after %v: %v", took.Round(time.Millisecond), err)
	if fs, _ := filepath.Glob(path + ".corrupt-*"); len(fs) != 0 {
		t.Fatalf("a locked DB was treated as damaged: %v", fs)
	}
	a.Close()
	b = mustOpen(t, path)
	defer b.Close()
	if got := mustRecords(t, b); !slices.Equal(got, []Record{bridge(1)}) {
		t.Fatalf("Records = %v", got)
	}
}

func setSchema(t *testing.T, path string, v []byte) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		if v == nil {
			return tx.Bucket(bucketMeta).Delete(keySchema)
		}
		return tx.Bucket(bucketMeta).Put(keySchema, v)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSchemaTooNew: a DB from newer firmware is refused and left exactly
// as it was, so a downgrade followed by an upgrade loses nothing. That holds
// even if the newer layout looks broken to this build, and for a newer
// bbolt on-disk format.
func TestSchemaTooNew(t *testing.T) {
	for _, tc := range []struct {
		name  string
		newer func(t *testing.T, path string)
	}{
		{"schema+1", func(t *testing.T, path string) {
			setSchema(t, path, binary.BigEndian.AppendUint32(nil, SchemaVersion+1))
		}},
		{"schema+1-without-units", func(t *testing.T, path string) {
			setSchema(t, path, binary.BigEndian.AppendUint32(nil, SchemaVersion+7))
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(tx *bolt.Tx) error { return tx.DeleteBucket(bucketUnits) }); err != nil {
				t.Fatal(err)
			}
		}},
		{"bbolt-format-3", func(t *testing.T, path string) {
			b := readFile(t, path)
			for _, off := range []int{0, pageSize} {
				m := b[off+pageHeaderSize:]
				ne.PutUint32(m[4:], boltVersion+1)
				ne.PutUint64(m[56:], parseMeta(b[off:], ne).sum)
			}
			writeFile(t, path, b)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { schemaTooNew(t, tc.newer) })
	}
}

func schemaTooNew(t *testing.T, newer func(t *testing.T, path string)) {
	path := filepath.Join(t.TempDir(), "units.db")
	s := mustOpen(t, path)
	mustApply(t, s, []Record{bridge(1)}, nil)
	s.Close()
	newer(t, path)
	before := readFile(t, path)
	opts, logs := testOptions()
	s, rec, err := Open(path, opts)
	if !errors.Is(err, ErrSchemaTooNew) || s != nil || rec != (Recovery{}) {
		t.Fatalf("Open = %v, %+v, %v; want ErrSchemaTooNew", s, rec, err)
	}
	t.Log(err)
	if !bytes.Equal(before, readFile(t, path)) {
		t.Fatal("a newer DB was modified")
	}
	if fs, _ := filepath.Glob(path + ".*"); len(fs) != 0 {
		t.Fatalf("files created beside a newer DB: %v", fs)
	}
	if logs.count("level=ERROR") != 0 {
		t.Fatalf("logged a recovery:\n%s", logs)
	}
	// Not locked afterwards: the caller may move it or retry.
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := lockFile(f, 100*time.Millisecond); err != nil {
		t.Fatalf("file still locked after refusal: %v", err)
	}
}

func TestMigrate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Update(initSchema); err != nil {
		t.Fatal(err)
	}
	var ran []int
	step := func(v int) migration {
		return func(tx *bolt.Tx) error {
			ran = append(ran, v)
			_, err := tx.CreateBucketIfNotExists([]byte{byte('a' + v)})
			return err
		}
	}
	migs := []migration{nil, step(1), step(2)}
	if err := db.Update(func(tx *bolt.Tx) error { return migrate(tx, 1, 3, migs) }); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(ran, []int{1, 2}) {
		t.Fatalf("ran %v", ran)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if v, _ := readSchema(tx); v != 3 || tx.Bucket([]byte("b")) == nil || tx.Bucket([]byte("c")) == nil {
			t.Fatalf("schema %d after migration", v)
		}
		return nil
	})

	// A failing step rolls back the earlier ones and the version.
	boom := errors.New("boom")
	migs = []migration{nil, nil, nil, step(3), func(*bolt.Tx) error { return boom }}
	err = db.Update(func(tx *bolt.Tx) error { return migrate(tx, 3, 5, migs) })
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	_ = db.View(func(tx *bolt.Tx) error {
		if v, _ := readSchema(tx); v != 3 || tx.Bucket([]byte("d")) != nil {
			t.Fatalf("failed migration left schema %d / bucket d", v)
		}
		return nil
	})
	if err := db.Update(func(tx *bolt.Tx) error { return migrate(tx, 0, 1, []migration{nil}) }); err == nil {
		t.Fatal("migration from schema 0 accepted")
	}
}
