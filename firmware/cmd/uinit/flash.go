package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// The data partition on flash (uroute.datafs=ubifs or jffs2).
//
// Routers keep their state on raw NAND/NOR through UBI+UBIFS (or JFFS2 on
// small NOR). Under QEMU the flash is emulated with block2mtd over the
// virtio data disk: uinit hands the disk to block2mtd at run time through
// the module's sysfs parameter (u-root's init has loaded the modules
// already, without parameters), attaches UBI with UBI_IOCATT on
// /dev/ubi_ctrl, makes a volume "data" over all free space if the device
// has none (UBI_IOCMKVOL), and mounts ubiN:data. UBIFS formats an empty
// volume itself on first mount and UBI formats an erased (all 0xFF) MTD
// device at attach, so a fresh disk needs nothing from the host but 0xFF
// bytes. See docs/flash.md.

const (
	block2mtdParam = "/sys/module/block2mtd/parameters/block2mtd"
	mtdClass       = "/sys/class/mtd"
	ubiClass       = "/sys/class/ubi"
	ubiCtrl        = "/dev/ubi_ctrl"
	dirtyExpire    = "/proc/sys/vm/dirty_expire_centisecs"
	dirtyWriteback = "/proc/sys/vm/dirty_writeback_centisecs"

	// flashEraseSize is block2mtd's erase block: 128 KiB, the common NAND
	// block size. uinit writes the byte count; block2mtd also takes
	// "128KiB" or "128Ki" but not "128K" ("illegal erase size").
	flashEraseSize = 128 << 10
	// ubiVolumeName is the UBI volume that holds the data file system.
	ubiVolumeName = "data"
)

// UBI ioctl arguments, from include/uapi/mtd/ubi-user.h. The request
// numbers (unix.UBI_IOCATT, unix.UBI_IOCMKVOL) encode the structs' sizes
// and differ between architectures (MIPS has 3 direction bits and 13 size
// bits); uinit_test checks that these Go types have exactly the sizes the
// numbers encode, on every GOARCH the tests are built for.
const (
	ubiDevNumAuto  = -1 // UBI_DEV_NUM_AUTO
	ubiVolNumAuto  = -1 // UBI_VOL_NUM_AUTO
	ubiDynamicVol  = 3  // UBI_DYNAMIC_VOLUME
	ubiMaxVolName  = 127
	ubiAttachSize  = 24  // sizeof(struct ubi_attach_req)
	ubiMkvolSize   = 152 // sizeof(struct ubi_mkvol_req), __packed
	mtdBlock2mtdAs = "block2mtd: "
)

// ubiAttachReq is struct ubi_attach_req. All fields are naturally aligned,
// so Go and C agree on every architecture: 24 bytes. Kernels before 6.0
// have padding[10] where NeedResvPool and Padding are; zero either way.
type ubiAttachReq struct {
	UBINum        int32 // in: UBI_DEV_NUM_AUTO; out: the number given
	MTDNum        int32
	VIDHdrOffset  int32 // 0: default
	MaxBEBPer1024 int16 // 0: default (CONFIG_MTD_UBI_BEB_LIMIT)
	DisableFM     int8
	NeedResvPool  int8
	Padding       [8]int8
}

// ubiMkvolReq is struct ubi_mkvol_req, which C declares __packed. Its
// fields happen to be naturally aligned too: Bytes sits at offset 8 both
// where Go aligns int64 to 8 (64-bit) and to 4 (32-bit MIPS, ARM), and the
// total, 152, is a multiple of 8, so no tail padding appears anywhere.
type ubiMkvolReq struct {
	VolID     int32
	Alignment int32
	Bytes     int64
	VolType   int8
	Flags     uint8
	NameLen   int16
	Padding2  [4]int8
	Name      [ubiMaxVolName + 1]byte
}

func newMkvolReq(name string, bytes int64) (*ubiMkvolReq, error) {
	if name == "" || len(name) > ubiMaxVolName {
		return nil, fmt.Errorf("UBI volume name %q: want 1-%d bytes", name, ubiMaxVolName)
	}
	r := &ubiMkvolReq{VolID: ubiVolNumAuto, Alignment: 1, Bytes: bytes, VolType: ubiDynamicVol, NameLen: int16(len(name))}
	copy(r.Name[:], name)
	return r, nil
}

// isFlashFS reports whether fstype is one uinit puts on emulated flash.
func isFlashFS(fstype string) bool { return fstype == "ubifs" || fstype == "jffs2" }

// errZeroFilled is returned for a data disk that reads all zeros where
// flash would read 0xFF.
var errZeroFilled = errors.New("zero-filled disk")

// probeFlash checks, without writing, that dev can be handed to block2mtd:
// its size is a whole number of erase blocks, it does not hold an ext file
// system, and it is not zero-filled (erased flash reads 0xFF; UBI takes
// zeros for corrupted blocks and refuses the device, JFFS2 reports every
// block). A disk that was never written must be created with 0xFF bytes.
func probeFlash(dev string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	size, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return fmt.Errorf("%s: size: %w", dev, err)
	}
	if size < 4*flashEraseSize || size%flashEraseSize != 0 {
		return fmt.Errorf("%s: %d bytes is not a whole number (at least 4) of %d KiB erase blocks", dev, size, flashEraseSize>>10)
	}
	ext, err := hasExtMagic(f)
	if err != nil {
		return fmt.Errorf("%s: read: %w", dev, err)
	}
	if ext {
		return fmt.Errorf("%s: holds an ext file system, not flash; left untouched (boot with uroute.datafs=ext4)", dev)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return err
	}
	zero, err := allZero(f, zeroCheckBytes)
	if err != nil {
		return fmt.Errorf("%s: %w", dev, err)
	}
	if zero {
		return fmt.Errorf("%s: %w (erased flash reads 0xFF; create it on the host with: head -c 64M /dev/zero | tr '\\0' '\\377' >data.img); left untouched", dev, errZeroFilled)
	}
	return nil
}

// readSysfs reads a one-line sysfs attribute.
func (b *boot) readSysfs(p string) (string, error) {
	data, err := os.ReadFile(b.path(p))
	return strings.TrimSpace(string(data)), err
}

// sysfsNums lists the numbered entries PREFIX<N> of a sysfs class
// directory (mtd0, mtd1; not mtd0ro), in numeric order.
func sysfsNums(names []string, prefix string) []int {
	var nums []int
	for _, n := range names {
		s, ok := strings.CutPrefix(n, prefix)
		if !ok {
			continue
		}
		if v, err := strconv.Atoi(s); err == nil && v >= 0 && strconv.Itoa(v) == s {
			nums = append(nums, v)
		}
	}
	sort.Ints(nums)
	return nums
}

func (b *boot) classNums(class, prefix string) []int {
	ents, err := os.ReadDir(b.path(class))
	if err != nil {
		return nil
	}
	names := make([]string, len(ents))
	for i, e := range ents {
		names[i] = e.Name()
	}
	return sysfsNums(names, prefix)
}

// findMTD returns the number of the MTD device block2mtd made from dev
// (named "block2mtd: DEV"), or -1.
func (b *boot) findMTD(dev string) int {
	for _, n := range b.classNums(mtdClass, "mtd") {
		name, err := b.readSysfs(fmt.Sprintf("%s/mtd%d/name", mtdClass, n))
		if err == nil && name == mtdBlock2mtdAs+dev {
			return n
		}
	}
	return -1
}

// quickWriteback makes the kernel write dirty page cache back 10 ms after
// it was dirtied instead of 30 s (the defaults: dirty_expire_centisecs
// 3000, dirty_writeback_centisecs 500).
//
// block2mtd is not write-through: an MTD write only dirties the page cache
// of the block device under it, and UBIFS's fsync (which syncs its write
// buffer to UBI, and UBI to MTD) never reaches the disk. ifmgrd makes its
// own commits durable by fsyncing that disk (firmware/daemon/block2mtd.go);
// this setting keeps everything else on /data (UBIFS's own journal
// commits, files written by hand) from sitting in RAM for half a minute.
// Real flash drivers write synchronously and need none of this. The
// setting is global, but the router has no other disk.
func (b *boot) quickWriteback() error {
	for _, p := range []string{dirtyExpire, dirtyWriteback} {
		if err := b.Sys.WriteFile(b.path(p), "1"); err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
	}
	return nil
}

// block2mtd makes dev an MTD device (if it is not one yet) and returns its
// number. The module is loaded by then; its parameter is writable at run
// time and adds the device synchronously.
func (b *boot) block2mtd(dev string) (int, error) {
	if n := b.findMTD(dev); n >= 0 {
		return n, nil
	}
	if _, err := os.Stat(b.path(block2mtdParam)); err != nil {
		return -1, fmt.Errorf("block2mtd module not loaded (%v); flash needs a kernel with MTD, e.g. Debian's generic amd64 or 4kc-malta", err)
	}
	arg := fmt.Sprintf("%s,%d", dev, flashEraseSize)
	if err := b.Sys.WriteFile(b.path(block2mtdParam), arg); err != nil {
		return -1, fmt.Errorf("block2mtd %q: %w", arg, err)
	}
	n := b.findMTD(dev)
	if n < 0 {
		// block2mtd reports its errors only in the kernel log: the write
		// itself succeeds.
		return -1, fmt.Errorf("block2mtd %q accepted but no MTD device named %q appeared (dmesg has block2mtd's reason)", arg, mtdBlock2mtdAs+dev)
	}
	return n, nil
}

// findUBI returns the UBI device attached to MTD device mtd, or -1.
func (b *boot) findUBI(mtd int) int {
	for _, n := range b.classNums(ubiClass, "ubi") {
		s, err := b.readSysfs(fmt.Sprintf("%s/ubi%d/mtd_num", ubiClass, n))
		if err == nil && s == strconv.Itoa(mtd) {
			return n
		}
	}
	return -1
}

// attachUBI attaches MTD device mtd to UBI unless it already is, and
// returns the UBI device number. On erased flash UBI formats the device.
func (b *boot) attachUBI(mtd int) (int, error) {
	if n := b.findUBI(mtd); n >= 0 {
		return n, nil
	}
	req := &ubiAttachReq{UBINum: ubiDevNumAuto, MTDNum: int32(mtd)}
	if err := b.Sys.UBIAttach(b.path(ubiCtrl), req); err != nil {
		return -1, fmt.Errorf("attach UBI to mtd%d: %w (dmesg has UBI's reason)", mtd, err)
	}
	return int(req.UBINum), nil
}

// ubiVolume makes sure UBI device ubi has a volume named name, creating
// one over all free space if not.
func (b *boot) ubiVolume(ubi int, name string) error {
	dir := fmt.Sprintf("%s/ubi%d", ubiClass, ubi)
	for _, n := range b.classNums(dir, fmt.Sprintf("ubi%d_", ubi)) {
		if v, err := b.readSysfs(fmt.Sprintf("%s/ubi%d_%d/name", dir, ubi, n)); err == nil && v == name {
			return nil
		}
	}
	avail, err := b.readSysfs(dir + "/avail_eraseblocks")
	if err != nil {
		return err
	}
	lebSize, err := b.readSysfs(dir + "/eraseblock_size")
	if err != nil {
		return err
	}
	nleb, err1 := strconv.ParseInt(avail, 10, 64)
	size, err2 := strconv.ParseInt(lebSize, 10, 64)
	if err1 != nil || err2 != nil || nleb <= 0 || size <= 0 {
		return fmt.Errorf("ubi%d: no space for volume %q (avail_eraseblocks %q, eraseblock_size %q)", ubi, name, avail, lebSize)
	}
	req, err := newMkvolReq(name, nleb*size)
	if err != nil {
		return err
	}
	if err := b.Sys.UBIMkvol(b.path(fmt.Sprintf("/dev/ubi%d", ubi)), req); err != nil {
		return fmt.Errorf("ubi%d: make volume %q of %d LEBs: %w", ubi, name, nleb, err)
	}
	return nil
}

// mtdPrefix in uroute.data names an MTD partition instead of a disk:
// uroute.data="mtd:User FS" (malta's NOR) or uroute.data=mtd:data.
const mtdPrefix = "mtd:"

// mtdWriteable is MTD_WRITEABLE in /sys/class/mtd/mtdN/flags: clear on
// partitions the board marks read-only (malta's "YAMON").
const mtdWriteable = 0x400

// findMTDByName returns the number of the MTD device (partition) named
// name, or -1.
func (b *boot) findMTDByName(name string) int {
	for _, n := range b.classNums(mtdClass, "mtd") {
		if v, err := b.readSysfs(fmt.Sprintf("%s/mtd%d/name", mtdClass, n)); err == nil && v == name {
			return n
		}
	}
	return -1
}

// mtdNames lists the MTD devices there are, for an error message.
func (b *boot) mtdNames() string {
	var names []string
	for _, n := range b.classNums(mtdClass, "mtd") {
		if v, err := b.readSysfs(fmt.Sprintf("%s/mtd%d/name", mtdClass, n)); err == nil {
			names = append(names, fmt.Sprintf("mtd%d %q", n, v))
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// phramParam is the phram module's device list, writable at run time.
const phramParam = "/sys/module/phram/parameters/phram"

// addPhram hands the kernel command line's phram.phram=NAME,START,LEN[,ERASE]
// to the phram module, as modprobe would when loading it (the image has
// no modprobe; u-root's init loads modules without parameters). phram
// maps that physical memory as an MTD device; under QEMU it is a host file
// shared into the guest (docs/flash.md). It reports whether it wrote.
func (b *boot) addPhram() (bool, error) {
	spec := parseCmdline(b.Cmdline)["phram.phram"]
	if spec == "" {
		return false, nil
	}
	name, _, _ := strings.Cut(spec, ",")
	if b.findMTDByName(name) >= 0 {
		return false, nil
	}
	if _, err := os.Stat(b.path(phramParam)); err != nil {
		return false, fmt.Errorf("phram.phram=%s given but the phram module is not loaded (%v)", spec, err)
	}
	if err := b.Sys.WriteFile(b.path(phramParam), spec); err != nil {
		return false, fmt.Errorf("phram %q: %w (dmesg has phram's reason)", spec, err)
	}
	return true, nil
}

// mtdPartition returns the number of the writable MTD partition named
// name, adding the command line's phram device first if there is one.
func (b *boot) mtdPartition(name string) (int, error) {
	if _, err := b.addPhram(); err != nil {
		return -1, err
	}
	n := b.findMTDByName(name)
	if n < 0 {
		return -1, fmt.Errorf("no MTD partition named %q (there are: %s)", name, b.mtdNames())
	}
	flags, err := b.readSysfs(fmt.Sprintf("%s/mtd%d/flags", mtdClass, n))
	if err != nil {
		return -1, err
	}
	f, err := strconv.ParseUint(flags, 0, 32)
	if err != nil {
		return -1, fmt.Errorf("mtd%d (%q): flags %q: %w", n, name, flags, err)
	}
	if f&mtdWriteable == 0 {
		return -1, fmt.Errorf("mtd%d (%q) is read-only (flags %s); left untouched", n, name, flags)
	}
	return n, nil
}

// attachFlash prepares cfg.Device as flash and returns the mount(2)
// source for cfg.FSType: "ubiN:data" for UBIFS, "mtdN" for JFFS2. The
// device is an MTD partition ("mtd:NAME", real flash: its writes are on
// the chip when they return) or a block device handed to block2mtd (an
// emulation whose writes sit in the page cache; see quickWriteback).
func (b *boot) attachFlash(cfg dataConfig) (string, error) {
	var mtd int
	if name, ok := strings.CutPrefix(cfg.Device, mtdPrefix); ok {
		var err error
		if mtd, err = b.mtdPartition(name); err != nil {
			return "", err
		}
	} else {
		if err := probeFlash(b.path(cfg.Device)); err != nil {
			return "", err
		}
		var err error
		if mtd, err = b.block2mtd(cfg.Device); err != nil {
			return "", err
		}
		if err := b.quickWriteback(); err != nil {
			return "", fmt.Errorf("block2mtd writes would reach the disk only after 30 s: %w", err)
		}
	}
	if cfg.FSType == "jffs2" {
		return fmt.Sprintf("mtd%d", mtd), nil
	}
	ubi, err := b.attachUBI(mtd)
	if err != nil {
		return "", err
	}
	if err := b.ubiVolume(ubi, ubiVolumeName); err != nil {
		return "", err
	}
	return fmt.Sprintf("ubi%d:%s", ubi, ubiVolumeName), nil
}
