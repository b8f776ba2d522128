package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/uroute/uroute/internal/faultfs"
	"github.com/uroute/uroute/persist"
)

// dbRecords reads the DB file of a stopped daemon.
func dbRecords(t *testing.T, path string) []string {
	t.Helper()
	s, _, err := persist.Open(path, persist.Options{Logger: testLogger(nil)})
	if err != nil {
		t.Fatalf("open %s: %v", path, err)
	}
	defer s.Close()
	recs, err := s.Records()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range recs {
		out = append(out, r.Identity.Key())
	}
	return out
}

// TestDBLocationFull: the data partition is full (mkdir of the DB
// directory gets ENOSPC). ifmgrd used to exit ("DB location is not
// writable"), and after 10 restarts the router had no bridges. Now it
// serves from memory, says why in status, and once space is freed (here
// noticed at `ifctl resync`) writes what it holds and persists.
func TestDBLocationFull(t *testing.T) {
	e := newEnv(t)
	data := filepath.Join(e.dir, "data")
	faultfs.Tmpfs(t, data, 256<<10)
	filler := faultfs.Fill(t, data)
	e.db = filepath.Join(data, "uroute", "ifmgr.db")
	e.start()
	c := e.client()
	if _, err := c.Create("bridge", "", 0); err != nil {
		t.Fatalf("create while the disk is full: %v", err)
	}
	st := e.status()
	if st.DB != persist.MemoryPath || !strings.Contains(st.DBProblem, "no space left on device") {
		t.Fatalf("status db %q, problem %q: want memory, and why", st.DB, st.DBProblem)
	}
	out, _, code := ifctl(t, e.socket, "status")
	if code != 0 || !strings.Contains(out, "db NOT PERSISTING: running from memory") {
		t.Errorf("ifctl status (exit %d) does not say that nothing persists:\n%s", code, out)
	}
	os.Remove(filler)
	if err := c.Resync(); err != nil {
		t.Fatal(err)
	}
	if st := e.status(); st.DB != e.db || st.DBProblem != "" || st.DBSize == 0 {
		t.Fatalf("after freeing space: db %q (%d bytes), problem %q", st.DB, st.DBSize, st.DBProblem)
	}
	if _, err := c.Create("bridge", "", 0); err != nil {
		t.Fatal(err)
	}
	e.stop()
	if got := dbRecords(t, e.db); len(got) != 2 {
		t.Fatalf("DB holds %q, want both bridges", got)
	}
}

// TestDBReadOnlyAtStart: a read-only data partition with a DB on it. The
// units it holds stay this boot's (read through a read-only mapping), and
// changes reach the file once it is writable.
func TestDBReadOnlyAtStart(t *testing.T) {
	e := newEnv(t)
	e.start()
	c := e.client()
	first, err := c.Create("bridge", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	e.stop()
	writable := faultfs.ReadOnly(t, filepath.Dir(e.db))
	e.start()
	st := e.status()
	if st.DB != persist.MemoryPath || !strings.Contains(st.DBProblem, "read-only file system") {
		t.Fatalf("status db %q, problem %q", st.DB, st.DBProblem)
	}
	c = e.client()
	second, err := c.Create("bridge", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if second.Name == first.Name {
		t.Fatalf("the unit in the read-only DB was handed out again: %s", second.Name)
	}
	writable()
	if err := c.Resync(); err != nil {
		t.Fatal(err)
	}
	if st := e.status(); st.DBProblem != "" {
		t.Fatalf("still not persisting: %s", st.DBProblem)
	}
	e.stop()
	if got := dbRecords(t, e.db); len(got) != 2 {
		t.Fatalf("DB holds %q, want both bridges", got)
	}
}

// TestDBDeletedWhileRunning: `rm ifmgr.db` under a running daemon used to
// go unnoticed: status showed 0 bytes and every commit went to the
// unlinked inode. Now the next check rewrites it from memory.
func TestDBDeletedWhileRunning(t *testing.T) {
	e := newEnv(t)
	e.start()
	c := e.client()
	var want []string
	for range 3 {
		in, err := c.Create("bridge", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		want = append(want, in.Identity)
	}
	if err := os.Remove(e.db); err != nil {
		t.Fatal(err)
	}
	if err := c.Resync(); err != nil {
		t.Fatal(err)
	}
	if st := e.status(); st.DBSize == 0 || st.DBProblem != "" {
		t.Fatalf("after the delete: %d bytes, problem %q", st.DBSize, st.DBProblem)
	}
	e.stop()
	got := dbRecords(t, e.db)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("DB holds %q, want %q", got, want)
	}
}
