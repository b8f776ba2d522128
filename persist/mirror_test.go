package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func mirrorPaths(t *testing.T) (snap, work string) {
	t.Helper()
	return filepath.Join(t.TempDir(), "flash", "ifmgr.snap"), filepath.Join(t.TempDir(), "ram", "ifmgr.db")
}

func mustOpenMirrored(t *testing.T, snap, work string) (*Store, Recovery) {
	t.Helper()
	opts, _ := testOptions()
	s, rec, err := OpenMirrored(snap, work, opts)
	if err != nil {
		t.Fatalf("OpenMirrored: %v", err)
	}
	return s, rec
}

func bridgeRec(unit uint32) Record {
	return Record{Cloner: "bridge", Unit: unit, Identity: Identity{Name: fmt.Sprintf("br-%d", unit)}}
}

func vlanRec(unit uint32) Record {
	return Record{Cloner: "vlan", Unit: unit, Identity: Identity{Rule: "lan", PermMAC: "52:54:00:12:34:01", VID: uint16(unit + 10)},
		ParentName: "eth0", VID: uint16(unit + 10)}
}

// Every commit is on flash when Apply returns, and comes back at Open.
func TestMirrorRoundTrip(t *testing.T) {
	snap, work := mirrorPaths(t)
	s, rec := mustOpenMirrored(t, snap, work)
	if rec != (Recovery{}) {
		t.Fatalf("recovery on a fresh directory: %+v", rec)
	}
	if st, ok := s.MirrorStats(); !ok || st != (MirrorStats{}) {
		t.Fatalf("fresh store: stats %+v, %v", st, ok)
	}
	want := []Record{bridgeRec(0), bridgeRec(1), bridgeRec(2), vlanRec(0), vlanRec(1)}
	for _, r := range want {
		if err := s.Apply([]Record{r}, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Apply(nil, []RecordKey{{"bridge", 1}}); err != nil {
		t.Fatal(err)
	}
	want = append(want[:1], want[2:]...)
	// An empty batch writes nothing.
	before, _ := s.MirrorStats()
	if err := s.Apply(nil, nil); err != nil {
		t.Fatal(err)
	}
	st, _ := s.MirrorStats()
	if st != before {
		t.Errorf("an empty batch wrote to flash: %+v -> %+v", before, st)
	}
	if st.Generation != 6 || st.Snapshots != 6 || st.Bytes == 0 || int64(st.Bytes) < 6*s.Size()/2 {
		t.Errorf("after 6 commits: %+v, snapshot %d bytes", st, s.Size())
	}
	if got := mustRecords(t, s); !reflect.DeepEqual(got, want) {
		t.Fatalf("records in RAM:\n%v\nwant\n%v", got, want)
	}
	// What is on flash alone, without Close (a power cut or kill -9).
	got, found, err := readSnapshot(snap)
	if err != nil || !found || got.gen != 6 || !reflect.DeepEqual(got.recs, want) {
		t.Fatalf("snapshot on flash: gen %d, %v, %v, %v", got.gen, got.recs, found, err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// The RAM copy is gone at reboot; only the snapshot matters.
	if err := os.Remove(work); err != nil {
		t.Fatal(err)
	}
	s2, rec := mustOpenMirrored(t, snap, work)
	defer s2.Close()
	if rec != (Recovery{}) {
		t.Errorf("recovery: %+v", rec)
	}
	if got := mustRecords(t, s2); !reflect.DeepEqual(got, want) {
		t.Fatalf("after reopen:\n%v\nwant\n%v", got, want)
	}
	if err := s2.Apply([]Record{bridgeRec(9)}, nil); err != nil {
		t.Fatal(err)
	}
	if st, _ := s2.MirrorStats(); st.Generation != 7 || st.Snapshots != 1 {
		t.Errorf("generation does not continue across Open: %+v", st)
	}
	if s2.Path() != snap {
		t.Errorf("Path %q, want %q", s2.Path(), snap)
	}
}

// A stale RAM copy (ifmgrd killed between its own commit and the
// snapshot, or a RAM file left from an older run) never wins over flash.
func TestMirrorRAMCopyRebuiltFromFlash(t *testing.T) {
	snap, work := mirrorPaths(t)
	s, _ := mustOpenMirrored(t, snap, work)
	if err := s.Apply([]Record{bridgeRec(0)}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	// A plain bbolt store with more in it at the RAM path.
	plain := mustOpen(t, work)
	if err := plain.Apply([]Record{bridgeRec(5), bridgeRec(6)}, nil); err != nil {
		t.Fatal(err)
	}
	plain.Close()
	s2, _ := mustOpenMirrored(t, snap, work)
	defer s2.Close()
	if got := mustRecords(t, s2); !reflect.DeepEqual(got, []Record{bridgeRec(0)}) {
		t.Fatalf("records %v, want only the snapshot's bridge0", got)
	}
}

// writeSnapFile writes b at path, making its directory.
func writeSnapFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, b)
}

// Every prefix of a snapshot and every single-bit flip in it is refused:
// a torn write can never be taken for a whole snapshot.
func TestSnapshotTornOrFlippedIsRefused(t *testing.T) {
	data := encodeSnapshot(42, []Record{bridgeRec(0), bridgeRec(3), vlanRec(1)})
	if s, err := decodeSnapshot(data); err != nil || s.gen != 42 || len(s.recs) != 3 {
		t.Fatalf("whole snapshot: %+v, %v", s, err)
	}
	for n := 0; n < len(data); n++ {
		if _, err := decodeSnapshot(data[:n]); err == nil {
			t.Fatalf("a snapshot torn at %d of %d bytes was accepted", n, len(data))
		}
	}
	for i := 0; i < len(data)*8; i++ {
		b := append([]byte(nil), data...)
		b[i/8] ^= 1 << (i % 8)
		if _, err := decodeSnapshot(b); err == nil {
			t.Fatalf("bit %d flipped was accepted", i)
		}
	}
	// Erased NOR (0xFF) and zeroed blocks are not snapshots either.
	for _, fill := range []byte{0x00, 0xff} {
		b := make([]byte, len(data))
		for i := range b {
			b[i] = fill
		}
		if _, err := decodeSnapshot(b); err == nil {
			t.Fatalf("%d bytes of %#x accepted", len(b), fill)
		}
	}
}

// Between <snap> and a <snap>.new left by a power cut, the whole one with
// the higher generation wins; a torn one never does.
func TestMirrorPicksNewestWholeSnapshot(t *testing.T) {
	older := encodeSnapshot(7, []Record{bridgeRec(0)})
	newer := encodeSnapshot(8, []Record{bridgeRec(0), bridgeRec(1)})
	for _, c := range []struct {
		name      string
		main, new []byte // nil: no such file
		want      []Record
		wantGen   uint64
	}{
		{"torn .new", older, newer[:len(newer)-3], []Record{bridgeRec(0)}, 7},
		{"empty .new", older, []byte{}, []Record{bridgeRec(0)}, 7},
		{"whole .new, newer", older, newer, []Record{bridgeRec(0), bridgeRec(1)}, 8},
		{"whole .new, older", newer, older, []Record{bridgeRec(0), bridgeRec(1)}, 8},
		{"only .new", nil, newer, []Record{bridgeRec(0), bridgeRec(1)}, 8},
		{"main damaged, .new whole", append([]byte("x"), newer[1:]...), older, []Record{bridgeRec(0)}, 7},
	} {
		t.Run(c.name, func(t *testing.T) {
			snap, work := mirrorPaths(t)
			if c.main != nil {
				writeSnapFile(t, snap, c.main)
			}
			if c.new != nil {
				writeSnapFile(t, snap+".new", c.new)
			}
			s, rec := mustOpenMirrored(t, snap, work)
			defer s.Close()
			if rec != (Recovery{}) {
				t.Errorf("recovery %+v", rec)
			}
			if got := mustRecords(t, s); !reflect.DeepEqual(got, c.want) {
				t.Errorf("records %v, want %v", got, c.want)
			}
			if st, _ := s.MirrorStats(); st.Generation != c.wantGen {
				t.Errorf("generation %d, want %d", st.Generation, c.wantGen)
			}
			// What was loaded is what <snap> holds now.
			if got, _, err := readSnapshot(snap); err != nil || got.gen != c.wantGen || !reflect.DeepEqual(got.recs, c.want) {
				t.Errorf("%s after Open: gen %d %v, %v", snap, got.gen, got.recs, err)
			}
			// The next commit supersedes both.
			if err := s.Apply([]Record{bridgeRec(5)}, nil); err != nil {
				t.Fatal(err)
			}
			if got, _, err := readSnapshot(snap); err != nil || got.gen != c.wantGen+1 {
				t.Errorf("next snapshot: gen %d, %v", got.gen, err)
			}
		})
	}
}

// No whole snapshot at all: moved aside, empty store, Recovery says so.
func TestMirrorNoWholeSnapshotRecovers(t *testing.T) {
	snap, work := mirrorPaths(t)
	writeSnapFile(t, snap, []byte("garbage that is no snapshot"))
	s, rec := mustOpenMirrored(t, snap, work)
	defer s.Close()
	if !errors.Is(rec.Reason, ErrCorrupt) || rec.MovedTo != snap+".corrupt-1" {
		t.Fatalf("recovery %+v", rec)
	}
	if _, err := os.Stat(rec.MovedTo); err != nil {
		t.Errorf("damaged snapshot not kept: %v", err)
	}
	if got := mustRecords(t, s); len(got) != 0 {
		t.Errorf("records %v from garbage", got)
	}
	if err := s.Apply([]Record{bridgeRec(0)}, nil); err != nil {
		t.Fatal(err)
	}
}

// A snapshot of a newer format is a downgrade: refused and left untouched.
func TestMirrorNewerFormatLeftUntouched(t *testing.T) {
	snap, work := mirrorPaths(t)
	data := encodeSnapshot(3, []Record{bridgeRec(0)})
	data[7] = snapshotFormat + 1
	writeSnapFile(t, snap, data)
	opts, _ := testOptions()
	_, _, err := OpenMirrored(snap, work, opts)
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatalf("err %v, want ErrSchemaTooNew", err)
	}
	if got, _ := os.ReadFile(snap); string(got) != string(data) {
		t.Errorf("the newer snapshot was modified")
	}
}

// Two stores on one snapshot directory: the second gets ErrLocked.
func TestMirrorLocked(t *testing.T) {
	snap, work := mirrorPaths(t)
	s, _ := mustOpenMirrored(t, snap, work)
	defer s.Close()
	opts, _ := testOptions()
	_, _, err := OpenMirrored(snap, work+"2", opts)
	if !errors.Is(err, ErrLocked) {
		t.Fatalf("second open: %v, want ErrLocked", err)
	}
}

// An unwritable snapshot directory is ErrUnwritable, as for Open.
func TestMirrorUnwritable(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root writes anywhere")
	}
	dir := t.TempDir()
	if err := os.Chmod(dir, 0o500); err != nil {
		t.Fatal(err)
	}
	opts, _ := testOptions()
	_, _, err := OpenMirrored(filepath.Join(dir, "x", "ifmgr.snap"), filepath.Join(t.TempDir(), "w.db"), opts)
	if !errors.Is(err, ErrUnwritable) {
		t.Fatalf("err %v, want ErrUnwritable", err)
	}
}
