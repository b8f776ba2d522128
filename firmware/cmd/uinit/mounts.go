package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// pseudoFS is one of the kernel file systems every step after this needs.
type pseudoFS struct{ Source, Target, FSType string }

var pseudoFSes = []pseudoFS{
	{"proc", "/proc", "proc"},
	{"sysfs", "/sys", "sysfs"},
	{"devtmpfs", "/dev", "devtmpfs"},
}

// mountPoints parses /proc/self/mounts (or /proc/mounts) and returns the
// set of mount points, with the kernel's octal escapes (\040 for a space)
// undone.
func mountPoints(text string) map[string]bool {
	m := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 {
			continue
		}
		m[unescapeMount(f[1])] = true
	}
	return m
}

func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// mounted reads the current mount table. Before /proc is mounted there is
// none, and nothing counts as mounted.
func (b *boot) mounted() map[string]bool {
	text, err := os.ReadFile(b.path("/proc/self/mounts"))
	if err != nil {
		return map[string]bool{}
	}
	return mountPoints(string(text))
}

// mountPseudo mounts proc, sysfs and devtmpfs where they are missing. u-root's
// init has normally mounted all three, so this usually changes nothing.
func (b *boot) mountPseudo() error {
	var errs []error
	for _, fs := range pseudoFSes {
		// Re-read each time: mounting /proc makes the table readable.
		if b.mounted()[fs.Target] {
			continue
		}
		target := b.path(fs.Target)
		if err := os.MkdirAll(target, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		flags := uintptr(unix.MS_NOSUID)
		if fs.FSType != "devtmpfs" {
			flags |= unix.MS_NOEXEC | unix.MS_NODEV
		}
		if err := b.Sys.Mount(fs.Source, target, fs.FSType, flags, ""); err != nil && !errors.Is(err, unix.EBUSY) {
			errs = append(errs, fmt.Errorf("mount %s on %s: %w", fs.FSType, fs.Target, err))
		}
	}
	return errors.Join(errs...)
}

// ext4 (and ext2/ext3) superblock: 1024 bytes into the device, with the
// magic number 0xEF53 (little-endian) 56 bytes into it.
const (
	extMagicOffset = 1024 + 56
	extMagic       = 0xEF53
	zeroCheckBytes = 1 << 20
)

// hasExtMagic reports whether r holds an ext2/3/4 superblock.
func hasExtMagic(r io.ReaderAt) (bool, error) {
	var buf [2]byte
	if _, err := r.ReadAt(buf[:], extMagicOffset); err != nil {
		if errors.Is(err, io.EOF) {
			return false, nil // too small to hold one
		}
		return false, err
	}
	return binary.LittleEndian.Uint16(buf[:]) == extMagic, nil
}

// allZero reports whether the first n bytes of r (or all of r, if shorter)
// are zero: a disk that was never written, so making a file system on it
// would destroy nothing.
func allZero(r io.Reader, n int64) (bool, error) {
	buf := make([]byte, 64<<10)
	lr := io.LimitReader(r, n)
	for {
		k, err := lr.Read(buf)
		if !bytes.Equal(buf[:k], make([]byte, k)) {
			return false, nil
		}
		if err == io.EOF {
			return true, nil
		}
		if err != nil {
			return false, err
		}
	}
}

// isExtFS reports whether fstype is one whose superblock hasExtMagic knows.
func isExtFS(fstype string) bool {
	return fstype == "ext2" || fstype == "ext3" || fstype == "ext4"
}

// errNoFS is returned for a data disk without a file system.
var errNoFS = errors.New("no file system")

// probeData checks, without writing, that dev looks like it holds fstype.
// uinit makes no file systems (u-root has no mkfs): a blank disk is
// reported as such, and is prepared on the host (scripts/run-qemu.sh runs
// mkfs.ext4) or at the factory.
func probeData(dev, fstype string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	if !isExtFS(fstype) {
		return nil // let mount(2) decide
	}
	ok, err := hasExtMagic(f)
	if err != nil {
		return fmt.Errorf("%s: read superblock: %w", dev, err)
	}
	if ok {
		return nil
	}
	zero, err := allZero(f, zeroCheckBytes)
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	if zero {
		return fmt.Errorf("%s: %w (blank disk; uinit does not run mkfs, make one with mkfs.%s on the host)", dev, errNoFS, fstype)
	}
	if blk, bs, ok := backupSuperblock(f); ok {
		return fmt.Errorf("%s: %w: the ext primary superblock is damaged, but its backup at block %d is intact; left untouched: "+
			"repair it with `e2fsck -b %d -B %d %s` (on the host, or a rescue system with e2fsprogs), then reboot",
			dev, errDamagedFS, blk, blk, bs, dev)
	}
	return fmt.Errorf("%s: %w of type %s and not blank; left untouched", dev, errNoFS, fstype)
}

// errDamagedFS is returned for an ext file system that e2fsck can repair.
var errDamagedFS = errors.New("damaged file system")

// backupSuperblock looks for the copy of the superblock that mke2fs keeps
// at the start of block group 1 (present with or without sparse_super), for
// each block size mke2fs makes with the default 8 x blocksize blocks per
// group. A candidate counts only if its magic, block size, blocks per group
// and first data block all agree with where it was found, so stray bytes
// do not pass for a file system. It returns the block number and block
// size that e2fsck -b and -B take.
func backupSuperblock(r io.ReaderAt) (block, blockSize int64, ok bool) {
	for _, bs := range []int64{1024, 2048, 4096, 65536} {
		perGroup := 8 * bs
		first := int64(0)
		if bs == 1024 {
			first = 1 // with 1 KiB blocks the boot block is block 0
		}
		blk := perGroup + first
		var sb [64]byte
		if _, err := r.ReadAt(sb[:], blk*bs); err != nil {
			continue
		}
		le := binary.LittleEndian
		if le.Uint16(sb[56:]) != extMagic ||
			int64(1024)<<le.Uint32(sb[24:]) != bs || // s_log_block_size
			int64(le.Uint32(sb[32:])) != perGroup || // s_blocks_per_group
			int64(le.Uint32(sb[20:])) != first { // s_first_data_block
			continue
		}
		return blk, bs, true
	}
	return 0, 0, false
}

// writeProtected reports whether the block device at dev (a path under
// b.Root) is read-only to the kernel: a write-protect switch, a read-only
// SD card or a QEMU drive with readonly=on. The kernel then refuses a
// writable mount with EACCES, which reads as "permission denied".
func (b *boot) writeProtected(dev string) bool {
	real, err := filepath.EvalSymlinks(b.path(dev))
	if err != nil {
		real = b.path(dev)
	}
	ro, err := os.ReadFile(b.path(filepath.Join("/sys/class/block", filepath.Base(real), "ro")))
	return err == nil && strings.TrimSpace(string(ro)) == "1"
}

// mountData mounts the data partition on /data. If that fails, /data
// becomes a tmpfs so ifmgrd still starts, and the error says the database
// will not persist.
func (b *boot) mountData() error {
	cfg := dataConfigFrom(b.Cmdline)
	target := b.path(dataDir)
	if b.mounted()[dataDir] {
		return nil
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	var err error
	source := cfg.Device
	if isFlashFS(cfg.FSType) {
		source, err = b.attachFlash(cfg)
		if err != nil {
			err = fmt.Errorf("%s on %s: %w", cfg.FSType, cfg.Device, err)
		}
	} else {
		err = probeData(b.path(cfg.Device), cfg.FSType)
		if logDev := dataLogFrom(b.Cmdline); err == nil && logDev != "" {
			source, err = b.attachDataLog(cfg.Device, logDev)
		}
	}
	if err == nil {
		const flags = unix.MS_NOATIME | unix.MS_NODEV | unix.MS_NOSUID
		err = b.Sys.Mount(source, target, cfg.FSType, flags, "")
		if (errors.Is(err, unix.EACCES) || errors.Is(err, unix.EROFS)) && !isFlashFS(cfg.FSType) && b.writeProtected(cfg.Device) {
			// Read-only is better than a tmpfs: the DB on it still gives
			// ifmgrd the units it allocated before.
			why := fmt.Errorf("%s is write-protected (the kernel refused a writable mount: %v)", cfg.Device, err)
			if rerr := b.Sys.Mount(source, target, cfg.FSType, flags|unix.MS_RDONLY, ""); rerr == nil {
				return fmt.Errorf("%v: mounted read-only on %s; nothing persists until the write protection is removed (switch, card lock or the VM's readonly drive) and the router rebooted", why, dataDir)
			}
			err = why
		} else if err != nil {
			err = fmt.Errorf("mount %s (%s) on %s: %w", source, cfg.FSType, dataDir, err)
		}
	}
	if err == nil {
		return nil
	}
	if terr := b.Sys.Mount("tmpfs", target, "tmpfs", unix.MS_NODEV|unix.MS_NOSUID, "mode=0755"); terr != nil {
		return fmt.Errorf("%v; tmpfs on %s failed too (%v): the DB will not persist", err, dataDir, terr)
	}
	return fmt.Errorf("%v; %s is a tmpfs, the DB will not persist", err, dataDir)
}
