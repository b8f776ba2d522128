package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/persist"
)

// A DB directory on JFFS2 (faked by statfs) gets the mirrored store:
// bbolt in RAM, a snapshot next to the DB path, and the records survive a
// restart. On the real thing bbolt's mmap fails with EINVAL
// (docs/flash.md); qemu-test's TestNOR runs it on malta's NOR flash.
func TestDBOnJFFS2Mirrored(t *testing.T) {
	e := newEnv(t)
	var asked []string
	statfs := func(path string, st *unix.Statfs_t) error {
		asked = append(asked, path)
		st.Type = typeOf(st.Type, unix.JFFS2_SUPER_MAGIC)
		return nil
	}
	run := func() (*syncBuffer, func()) {
		ready := make(chan struct{})
		ctx, cancel := context.WithCancel(context.Background())
		e.cancel, e.done = cancel, make(chan error, 1)
		logs := &syncBuffer{}
		o := Options{DB: e.db, Socket: e.socket, OwnerGroup: e.group, BridgeTemplate: "bridge%d", BridgeMax: ifmgr.DefaultMaxUnit,
			VLANTemplate: "vlan%d", VLANMax: ifmgr.DefaultMaxUnit, RequestTimeout: time.Minute,
			Logger: slog.New(slog.NewTextHandler(logs, nil)), Ready: func() { close(ready) }, statfs: statfs}
		go func() { e.done <- Run(ctx, o) }()
		select {
		case <-ready:
		case err := <-e.done:
			t.Fatalf("daemon did not start: %v", err)
		}
		return logs, e.stop
	}
	logs, stop := run()
	snap, _ := mirrorPaths(e.db)
	var made []string
	for i := 0; i < 3; i++ {
		in, err := e.client().Create("bridge", "", 0)
		if err != nil {
			t.Fatalf("create: %v", err)
		}
		made = append(made, in.Name)
	}
	if st := e.status(); st.DB != snap || st.DBSize == 0 || st.Commits != 3 {
		t.Errorf("status: DB %q (%d bytes, %d commits), want %s, 3 commits", st.DB, st.DBSize, st.Commits, snap)
	}
	stop()
	if len(asked) != 1 || asked[0] != e.dir {
		t.Errorf("statfs asked about %q, want [%s]", asked, e.dir)
	}
	if _, err := os.Stat(e.db); err == nil {
		t.Errorf("a bbolt file was made at %s", e.db)
	}
	if !strings.Contains(logs.String(), "jffs2") || !strings.Contains(logs.String(), "mirrored") {
		t.Errorf("log does not say why:\n%s", logs.String())
	}
	// The snapshot alone holds the three bridges.
	st, rec, err := persist.OpenMirrored(snap, filepath.Join(t.TempDir(), "check.db"), persist.Options{Logger: testLogger(nil)})
	if err != nil || rec.Reason != nil {
		t.Fatalf("reopen snapshot: %v %+v", err, rec)
	}
	recs, _ := st.Records()
	st.Close()
	got := map[string]bool{}
	for _, r := range recs {
		got[fmt.Sprintf("%s%d", r.Cloner, r.Unit)] = true
	}
	for _, n := range made {
		if !got[n] {
			t.Errorf("%s is not in the snapshot: %+v", n, recs)
		}
	}
	// A restart loads them (their links still exist: same units).
	_, stop = run()
	defer stop()
	list, err := e.client().List()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, in := range list {
		have[in.Name] = true
	}
	for _, n := range made {
		if !have[n] {
			t.Errorf("%s lost across the restart: %v", n, names(list))
		}
	}
}

func TestNeedsMirror(t *testing.T) {
	dir := t.TempDir()
	// The real file system of the test's temporary directory is fine.
	if ok, why := needsMirror(filepath.Join(dir, "a", "b", "ifmgr.db"), nil); ok {
		t.Errorf("temp dir: %s", why)
	}
	for _, tc := range []struct {
		magic  int64
		mirror bool
	}{
		{unix.JFFS2_SUPER_MAGIC, true},
		{0x24051905, false}, // UBIFS
		{unix.TMPFS_MAGIC, false},
		{unix.EXT4_SUPER_MAGIC, false},
	} {
		ok, why := needsMirror(filepath.Join(dir, "ifmgr.db"), func(_ string, st *unix.Statfs_t) error {
			st.Type = typeOf(st.Type, tc.magic)
			return nil
		})
		if ok != tc.mirror || ok && !strings.Contains(why, "jffs2") {
			t.Errorf("magic %#x: %v %q", tc.magic, ok, why)
		}
	}
	// statfs failing is left to persist.Open to report.
	if ok, _ := needsMirror(filepath.Join(dir, "ifmgr.db"), func(string, *unix.Statfs_t) error { return unix.ENOSYS }); ok {
		t.Error("statfs error: mirrored")
	}
}

func TestMirrorPaths(t *testing.T) {
	snap, work := mirrorPaths("/data/uroute/ifmgr.db")
	if snap != "/data/uroute/ifmgr.snap" {
		t.Errorf("snapshot %s", snap)
	}
	if filepath.Dir(work) != filepath.Join(os.TempDir(), "uroute") {
		t.Errorf("RAM copy %s is not in the temporary directory", work)
	}
	if _, other := mirrorPaths("/data/other/ifmgr.db"); other == work {
		t.Errorf("two DBs share the RAM copy %s", work)
	}
}
