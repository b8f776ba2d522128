package daemon

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/persist"
)

// block2mtd (the QEMU images' flash emulation, docs/flash.md) writes into
// the page cache of the block device under it and nothing more: UBIFS's
// and JFFS2's fsync end there, so a commit bbolt (or the mirrored store)
// was told is durable sits in guest RAM until the kernel's flusher writes
// it. A power cut then loses confirmed allocations: the cause of TestFlash
// logging "2 bridges confirmed; next boot: 1 of them in the DB". Real MTD
// drivers write synchronously; for block2mtd ifmgrd makes its commits
// reach the disk itself, by fsync(2) of the backing block device after
// each one, before ifmgr confirms anything.

// sysRoot prefixes /proc and /sys paths; tests point it at a fake tree.
var sysRoot = ""

// block2mtdBacking returns the block device under the file system that
// holds dir, if that file system sits on block2mtd ("" otherwise): it
// finds the mount (the longest mount point containing dir), its MTD
// device (ubiN:VOL through /sys/class/ubi/ubiN/mtd_num, or mtdN), and that
// device's name, which block2mtd sets to "block2mtd: DEV".
func block2mtdBacking(dir string) string {
	src := mountSource(dir)
	if src == "" {
		return ""
	}
	mtd := -1
	switch {
	case strings.HasPrefix(src, "ubi"):
		num, _, _ := strings.Cut(strings.TrimPrefix(src, "ubi"), ":")
		num, _, _ = strings.Cut(num, "_")
		if _, err := strconv.Atoi(num); err != nil {
			return ""
		}
		b, err := os.ReadFile(filepath.Join(sysRoot, "/sys/class/ubi/ubi"+num, "mtd_num"))
		if err != nil {
			return ""
		}
		mtd, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	case strings.HasPrefix(src, "mtd:"):
		return "" // by name: not block2mtd's
	case strings.HasPrefix(src, "mtd"):
		n, err := strconv.Atoi(strings.TrimPrefix(src, "mtd"))
		if err != nil {
			return ""
		}
		mtd = n
	default:
		return ""
	}
	b, err := os.ReadFile(filepath.Join(sysRoot, fmt.Sprintf("/sys/class/mtd/mtd%d/name", mtd)))
	if err != nil {
		return ""
	}
	dev, ok := strings.CutPrefix(strings.TrimSpace(string(b)), "block2mtd: ")
	if !ok {
		return ""
	}
	return dev
}

// mountSource is the source of the mount that holds dir, from
// /proc/self/mountinfo ("" if not found).
func mountSource(dir string) string {
	f, err := os.Open(filepath.Join(sysRoot, "/proc/self/mountinfo"))
	if err != nil {
		return ""
	}
	defer f.Close()
	dir = filepath.Clean(dir)
	best, src := -1, ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPER
		fields := strings.Fields(sc.Text())
		sep := -1
		for i, x := range fields {
			if x == "-" {
				sep = i
				break
			}
		}
		if len(fields) < 5 || sep < 0 || sep+2 >= len(fields) {
			continue
		}
		mp := unescapeMountinfo(fields[4])
		if mp != "/" && dir != mp && !strings.HasPrefix(dir, mp+"/") {
			continue
		}
		if len(mp) >= best { // later mounts on the same point hide earlier ones
			best, src = len(mp), fields[sep+2]
		}
	}
	return src
}

func unescapeMountinfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if v, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(v))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// deviceSyncStore makes every commit of Store reach dev (the block device
// under block2mtd) before Apply returns.
type deviceSyncStore struct {
	ifmgr.Store
	dev *os.File
}

var _ ifmgr.Store = deviceSyncStore{}

// Apply commits, then writes the device's page cache out and waits
// (fsync of a block device: blkdev_fsync, with a cache flush).
func (s deviceSyncStore) Apply(puts []persist.Record, dels []persist.RecordKey) error {
	if err := s.Store.Apply(puts, dels); err != nil {
		return err
	}
	if len(puts) == 0 && len(dels) == 0 {
		return nil
	}
	if err := s.dev.Sync(); err != nil {
		return fmt.Errorf("commit written but not flushed to %s under block2mtd: %w", s.dev.Name(), err)
	}
	return nil
}

// nearestDir is dir or its nearest existing ancestor.
func nearestDir(path string) string {
	dir := filepath.Dir(path)
	for {
		if _, err := os.Stat(dir); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return dir
		}
		dir = parent
	}
}
