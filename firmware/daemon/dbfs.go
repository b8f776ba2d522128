package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrDBFilesystem means the allocation DB's directory is on a file system
// bbolt cannot run on. ifmgrd then runs without persistence and leaves the
// directory alone.
var ErrDBFilesystem = errors.New("allocation DB cannot live on this file system")

// unsupportedFS are the file systems (by statfs f_type) that bbolt cannot
// use, and why. bbolt maps its file with mmap(PROT_READ, MAP_SHARED) from
// a read-write descriptor and writes with pwrite + fdatasync; see
// docs/flash.md for what was tried on each.
var unsupportedFS = map[int64]struct{ name, why string }{
	unix.JFFS2_SUPER_MAGIC: {"jffs2", "JFFS2 has only generic_file_readonly_mmap, which refuses a shared mapping of a file opened read-write (EINVAL), so bbolt cannot map its file; use UBIFS"},
}

// statfsFunc is unix.Statfs; tests replace it.
type statfsFunc func(path string, st *unix.Statfs_t) error

// checkDBFilesystem returns an error wrapping ErrDBFilesystem if the DB at
// path would sit on a file system in unsupportedFS. It looks at the DB's
// directory, or the nearest ancestor that exists (the directory is made
// later, by persist). A statfs failure is not reported: persist.Open then
// gives the real error.
func checkDBFilesystem(path string, statfs statfsFunc) error {
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
			return nil
		}
		dir = parent
	}
	var st unix.Statfs_t
	if err := statfs(dir, &st); err != nil {
		return nil
	}
	// f_type is int64 on 64-bit and int32 on 32-bit MIPS and ARM.
	if fs, ok := unsupportedFS[int64(st.Type)]; ok {
		return fmt.Errorf("%w: %s is on %s (f_type %#x): %s", ErrDBFilesystem, dir, fs.name, st.Type, fs.why)
	}
	return nil
}
