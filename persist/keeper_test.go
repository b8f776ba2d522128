package persist

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uroute/uroute/internal/faultfs"
)

func openKeeper(t *testing.T, path string) (*Keeper, *logBuf) {
	t.Helper()
	opts, logs := testOptions()
	k, _, err := OpenKeeper(path, KeeperOptions{Logger: opts.Logger, Recheck: -1})
	if err != nil {
		t.Fatalf("OpenKeeper: %v", err)
	}
	t.Cleanup(func() { k.Close() })
	return k, logs
}

func keeperApply(t *testing.T, k *Keeper, puts []Record, dels []RecordKey) {
	t.Helper()
	if err := k.Apply(puts, dels); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

// onDisk closes k and returns what the file at path holds.
func onDisk(t *testing.T, k *Keeper, path string) []Record {
	t.Helper()
	if err := k.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s := mustOpen(t, path)
	defer s.Close()
	return mustRecords(t, s)
}

// TestKeeperFullFileSystem: the DB cannot even be created (ENOSPC), as on a
// small data partition full of a moved-aside corrupt DB. The Keeper runs
// from memory and says why; a recheck while still full changes nothing and
// logs nothing new; once space is freed, a recheck writes every record held
// in memory and commits persist again.
func TestKeeperFullFileSystem(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	faultfs.Tmpfs(t, dir, 256<<10)
	filler := faultfs.Fill(t, dir)
	path := filepath.Join(dir, "uroute", "ifmgr.db")
	k, logs := openKeeper(t, path)
	if k.Path() != MemoryPath || !strings.Contains(k.Problem(), "no space left on device") {
		t.Fatalf("path %q, problem %q: want memory, for want of space", k.Path(), k.Problem())
	}
	keeperApply(t, k, []Record{bridge(1), bridge(2), bridge(3)}, nil)
	keeperApply(t, k, nil, []RecordKey{{"bridge", 2}})
	for range 3 {
		k.Recheck()
	}
	if k.Path() != MemoryPath {
		t.Fatal("persisting on a full file system")
	}
	if n := logs.count("level=ERROR", "not usable"); n != 1 {
		t.Errorf("%d ERROR lines for one unchanged condition, want 1:\n%s", n, logs)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	k.Recheck()
	if k.Path() != path || k.Problem() != "" {
		t.Fatalf("after freeing space: path %q, problem %q", k.Path(), k.Problem())
	}
	if n := logs.count("level=WARN", "persisting again", "records=2"); n != 1 {
		t.Errorf("the write-back is not logged once with its record count:\n%s", logs)
	}
	keeperApply(t, k, []Record{bridge(4)}, nil)
	if got, want := onDisk(t, k, path), []Record{bridge(1), bridge(3), bridge(4)}; !slices.Equal(got, want) {
		t.Fatalf("on disk %v, want %v", got, want)
	}
}

// TestKeeperReadOnlyMount: on a read-only mount the existing DB is read
// (the units of absent hardware stay reserved this boot), changes are held
// in memory, and when the mount turns writable the file is made to match
// memory: deletions included.
func TestKeeperReadOnlyMount(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	os.MkdirAll(dir, 0o700)
	path := filepath.Join(dir, "ifmgr.db")
	s := mustOpen(t, path)
	mustApply(t, s, []Record{bridge(1), bridge(2), vlan(0, "eth0", 10)}, nil)
	s.Close()
	writable := faultfs.ReadOnly(t, dir)

	k, logs := openKeeper(t, path)
	if k.Path() != MemoryPath || !strings.Contains(k.Problem(), "read-only file system") {
		t.Fatalf("path %q, problem %q: want memory, for a read-only mount", k.Path(), k.Problem())
	}
	if n := logs.count("level=ERROR", "loaded=\"3 records from the existing file, read-only\""); n != 1 {
		t.Errorf("the read-only load is not logged:\n%s", logs)
	}
	got, _ := k.Records()
	if want := []Record{bridge(1), bridge(2), vlan(0, "eth0", 10)}; !slices.Equal(got, want) {
		t.Fatalf("records from the read-only file %v, want %v", got, want)
	}
	keeperApply(t, k, []Record{bridge(7)}, []RecordKey{{"bridge", 1}})
	writable()
	k.Recheck()
	if k.Problem() != "" {
		t.Fatalf("still not persisting: %s", k.Problem())
	}
	if got, want := onDisk(t, k, path), []Record{bridge(2), bridge(7), vlan(0, "eth0", 10)}; !slices.Equal(got, want) {
		t.Fatalf("on disk %v, want %v", got, want)
	}
}

// TestKeeperFileDeleted: the DB file deleted while running used to take
// every later commit into an unlinked inode (status showed 0 bytes, and a
// restart lost the reservations). The Keeper notices at the next Apply or
// Recheck and writes a new file from memory.
func TestKeeperFileDeleted(t *testing.T) {
	for _, notice := range []string{"recheck", "apply"} {
		t.Run(notice, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "ifmgr.db")
			k, logs := openKeeper(t, path)
			keeperApply(t, k, []Record{bridge(1), bridge(2)}, nil)
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
			switch notice {
			case "recheck":
				k.Recheck()
				if k.Size() == 0 {
					t.Error("status would show 0 bytes: the file was not rewritten")
				}
			case "apply":
				keeperApply(t, k, []Record{bridge(3)}, nil)
			}
			if n := logs.count("level=ERROR", "was deleted while ifmgrd ran", "records=2"); n != 1 {
				t.Errorf("the deletion is not logged once:\n%s", logs)
			}
			want := []Record{bridge(1), bridge(2)}
			if notice == "apply" {
				want = append(want, bridge(3))
			}
			if got := onDisk(t, k, path); !slices.Equal(got, want) {
				t.Fatalf("on disk %v, want %v", got, want)
			}
		})
	}
}

// TestKeeperFileReplaced: a file renamed over the DB (another inode) is
// noticed like a deletion, and memory wins over its content.
func TestKeeperFileReplaced(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "ifmgr.db")
	k, logs := openKeeper(t, path)
	keeperApply(t, k, []Record{bridge(1)}, nil)
	other := filepath.Join(dir, "other.db")
	s := mustOpen(t, other)
	mustApply(t, s, []Record{{Cloner: "bridge", Unit: 1, Identity: Identity{Name: "impostor"}}}, nil)
	s.Close()
	if err := os.Rename(other, path); err != nil {
		t.Fatal(err)
	}
	k.Recheck()
	if n := logs.count("level=ERROR", "replaced by another file"); n != 1 {
		t.Errorf("the replacement is not logged once:\n%s", logs)
	}
	if got := onDisk(t, k, path); !slices.Equal(got, []Record{bridge(1)}) {
		t.Fatalf("on disk %v, want memory's %v", got, []Record{bridge(1)})
	}
}

// TestKeeperWriteBackKeepsUnknownReservations: records only the file holds
// (written before a boot that could not read it) survive the write-back,
// unless memory holds their identity under another unit.
func TestKeeperWriteBackKeepsUnknownReservations(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	path := filepath.Join(dir, "ifmgr.db")
	os.MkdirAll(dir, 0o700)
	k, _ := openKeeper(t, path)
	k.Close()
	// Simulate a boot that could not read the file: memory starts empty.
	k = &Keeper{path: path, open: Open, watchFile: true, log: discardLogger(), mem: map[RecordKey]Record{}, dropped: map[RecordKey]bool{}, problem: errors.New("test")}
	s := mustOpen(t, path)
	moved := Record{Cloner: "bridge", Unit: 5, Identity: Identity{Name: "br-9"}}
	mustApply(t, s, []Record{bridge(1), moved}, nil)
	s.Close()
	keeperApply(t, k, []Record{bridge(9)}, nil) // br-9 got unit 9 this boot
	k.Recheck()
	if k.Problem() != "" {
		t.Fatal(k.Problem())
	}
	if got, want := onDisk(t, k, path), []Record{bridge(1), bridge(9)}; !slices.Equal(got, want) {
		t.Fatalf("on disk %v, want %v", got, want)
	}
}

// TestKeeperRecheckLoop: the background check finds the freed space by
// itself.
func TestKeeperRecheckLoop(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	faultfs.Tmpfs(t, dir, 256<<10)
	filler := faultfs.Fill(t, dir)
	path := filepath.Join(dir, "ifmgr.db")
	k, _, err := OpenKeeper(path, KeeperOptions{Logger: discardLogger(), Recheck: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	keeperApply(t, k, []Record{bridge(1)}, nil)
	os.Remove(filler)
	deadline := time.Now().Add(time.Minute) // a hang guard, not a speed requirement
	for k.Problem() != "" {
		if time.Now().After(deadline) {
			t.Fatalf("never persisted: %s", k.Problem())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := onDisk(t, k, path); !slices.Equal(got, []Record{bridge(1)}) {
		t.Fatalf("on disk %v", got)
	}
}

// TestKeeperLockedIsAnError: another daemon holding the DB is not a reason
// to run from memory beside it.
func TestKeeperLockedIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ifmgr.db")
	s := mustOpen(t, path)
	defer s.Close()
	if _, _, err := OpenKeeper(path, KeeperOptions{Logger: discardLogger(), Recheck: -1}); !errors.Is(err, ErrLocked) {
		t.Fatalf("OpenKeeper on a locked DB: %v, want ErrLocked", err)
	}
}

// TestFreshDBErrorsNameTheFile: a DB is built as path+".new" and renamed
// into place; bbolt's later I/O errors used to name the ".new" file, which
// no longer exists.
func TestFreshDBErrorsNameTheFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	faultfs.Tmpfs(t, dir, 256<<10)
	path := filepath.Join(dir, "ifmgr.db")
	s := mustOpen(t, path)
	defer s.Close()
	faultfs.Fill(t, dir)
	var big []Record
	for u := range uint32(2000) {
		r := bridge(u)
		r.Identity.Name = strings.Repeat("x", 200)
		big = append(big, r)
	}
	err := s.Apply(big, nil)
	if err == nil {
		t.Fatal("a 2000-record batch fit on a full file system")
	}
	t.Logf("error: %v", err)
	if strings.Contains(err.Error(), ".new") {
		t.Fatalf("error names the temporary file: %v", err)
	}
}
