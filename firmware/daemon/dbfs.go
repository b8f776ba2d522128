package daemon

import (
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mirrorFS are the file systems (by statfs f_type) where bbolt cannot keep
// its file, and why. There ifmgrd keeps bbolt's file in RAM and mirrors
// every commit to the DB's directory as a snapshot
// (persist.OpenMirrored). bbolt maps its file with mmap(PROT_READ,
// MAP_SHARED) from a read-write descriptor and writes with pwrite +
// fdatasync; see docs/flash.md for what was tried on each.
var mirrorFS = map[int64]struct{ name, why string }{
	unix.JFFS2_SUPER_MAGIC: {"jffs2", "JFFS2 has only generic_file_readonly_mmap, which refuses a shared mapping of a file opened read-write (EINVAL), so bbolt cannot map its file there"},
}

// statfsFunc is unix.Statfs; tests replace it.
type statfsFunc func(path string, st *unix.Statfs_t) error

// needsMirror says whether the DB at path sits on a file system in
// mirrorFS, and which and why. It looks at the DB's directory, or the
// nearest ancestor that exists (the directory is made later, by persist).
// A statfs failure answers no: persist.Open then gives the real error.
func needsMirror(path string, statfs statfsFunc) (bool, string) {
	if statfs == nil {
		statfs = unix.Statfs
	}
	dir := filepath.Dir(path)
	for {
		if _, err := os.Stat(dir); err == nil {
			break
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return false, ""
		}
		dir = parent
	}
	var st unix.Statfs_t
	if err := statfs(dir, &st); err != nil {
		return false, ""
	}
	// f_type is int64 on 64-bit and int32 on 32-bit MIPS and ARM.
	if fs, ok := mirrorFS[int64(st.Type)]; ok {
		return true, fmt.Sprintf("%s is on %s (f_type %#x): %s", dir, fs.name, st.Type, fs.why)
	}
	return false, ""
}

// mirrorPaths are where the mirrored store keeps the DB given as db: the
// snapshot next to it on flash (ifmgr.db -> ifmgr.snap), and bbolt's
// working file in the temporary directory, which on the router is the
// initramfs (RAM), named after the snapshot so that two daemons on two
// DBs do not share one.
func mirrorPaths(db string) (snap, work string) {
	snap = strings.TrimSuffix(db, ".db") + ".snap"
	abs, err := filepath.Abs(snap)
	if err != nil {
		abs = snap
	}
	work = filepath.Join(os.TempDir(), "uroute", fmt.Sprintf("ifmgr-%08x.db", crc32.ChecksumIEEE([]byte(abs))))
	return snap, work
}
