package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The UBI ioctl structs must have the C layout on every GOARCH: the request
// numbers from x/sys (generated from the kernel headers per architecture)
// encode sizeof the struct, and the kernel copies exactly that many bytes.
// GOARCH=mipsle go vet / test builds check the 32-bit MIPS layout.
func TestUBIStructLayout(t *testing.T) {
	var a ubiAttachReq
	var m ubiMkvolReq
	if s := unsafe.Sizeof(a); s != ubiAttachSize {
		t.Errorf("sizeof ubi_attach_req = %d, want %d", s, ubiAttachSize)
	}
	if s := unsafe.Sizeof(m); s != ubiMkvolSize {
		t.Errorf("sizeof ubi_mkvol_req = %d, want %d", s, ubiMkvolSize)
	}
	for _, c := range []struct {
		name      string
		got, want uintptr
	}{
		{"attach.mtd_num", unsafe.Offsetof(a.MTDNum), 4},
		{"attach.vid_hdr_offset", unsafe.Offsetof(a.VIDHdrOffset), 8},
		{"attach.max_beb_per1024", unsafe.Offsetof(a.MaxBEBPer1024), 12},
		{"attach.disable_fm", unsafe.Offsetof(a.DisableFM), 14},
		{"attach.need_resv_pool", unsafe.Offsetof(a.NeedResvPool), 15},
		{"mkvol.alignment", unsafe.Offsetof(m.Alignment), 4},
		{"mkvol.bytes", unsafe.Offsetof(m.Bytes), 8},
		{"mkvol.vol_type", unsafe.Offsetof(m.VolType), 16},
		{"mkvol.flags", unsafe.Offsetof(m.Flags), 17},
		{"mkvol.name_len", unsafe.Offsetof(m.NameLen), 18},
		{"mkvol.name", unsafe.Offsetof(m.Name), 24},
	} {
		if c.got != c.want {
			t.Errorf("offset of %s = %d, want %d", c.name, c.got, c.want)
		}
	}
	// _IOC size field: bits 16-29 (14 bits) or 16-28 on MIPS/PowerPC/SPARC
	// (13 bits); both sizes fit 13. Type 'o', numbers 64 and 0.
	for _, c := range []struct {
		name string
		req  uint64
		size uintptr
		low  uint64
	}{
		{"UBI_IOCATT", unix.UBI_IOCATT, unsafe.Sizeof(a), 0x6f40},
		{"UBI_IOCMKVOL", unix.UBI_IOCMKVOL, unsafe.Sizeof(m), 0x6f00},
	} {
		if got := uintptr(c.req>>16) & 0x1fff; got != c.size {
			t.Errorf("%s %#x encodes size %d, the Go struct has %d", c.name, c.req, got, c.size)
		}
		if c.req&0xffff != c.low {
			t.Errorf("%s %#x: type/number %#x, want %#x", c.name, c.req, c.req&0xffff, c.low)
		}
	}
}

func TestNewMkvolReq(t *testing.T) {
	r, err := newMkvolReq("data", 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	if r.VolID != -1 || r.Alignment != 1 || r.Bytes != 1<<40 || r.VolType != 3 || r.NameLen != 4 || string(r.Name[:5]) != "data\x00" {
		t.Errorf("req = %+v", r)
	}
	for _, name := range []string{"", strings.Repeat("x", 128)} {
		if _, err := newMkvolReq(name, 1); err == nil {
			t.Errorf("name of %d bytes accepted", len(name))
		}
	}
	if _, err := newMkvolReq(strings.Repeat("x", 127), 1); err != nil {
		t.Errorf("127-byte name: %v", err)
	}
}

func TestSysfsNums(t *testing.T) {
	got := sysfsNums([]string{"mtd10", "mtd0ro", "mtd2", "mtd0", "mtdx", "mtd01", "ubi0", "mtd-1"}, "mtd")
	if want := []int{0, 2, 10}; !reflect.DeepEqual(got, want) {
		t.Errorf("sysfsNums = %v, want %v", got, want)
	}
}

func TestFlashDataConfig(t *testing.T) {
	for _, fs := range []string{"ubifs", "jffs2"} {
		c := dataConfigFrom("console=ttyS0 uroute.datafs=" + fs)
		if c != (dataConfig{"/dev/vda", fs}) || !isFlashFS(c.FSType) {
			t.Errorf("%s: %+v", fs, c)
		}
	}
	if isFlashFS("ext4") || isFlashFS("ubi") {
		t.Error("ext4 or ubi taken for flash")
	}
}

// flashKernel fakes the kernel's side: the disk, block2mtd's parameter, and
// the sysfs entries block2mtd and UBI make.
type flashKernel struct {
	t    *testing.T
	root string
	fs   *fakeSys
}

func newFlashKernel(t *testing.T, disk []byte) *flashKernel {
	k := &flashKernel{t: t, root: t.TempDir()}
	if disk != nil {
		write(t, k.p("/dev/vda"), disk)
	}
	write(t, k.p(block2mtdParam), nil)
	write(t, k.p(dirtyExpire), []byte("3000\n"))
	write(t, k.p(dirtyWriteback), []byte("500\n"))
	// Other MTD devices and block2mtd's read-only twin must be skipped.
	write(t, k.p("/sys/class/mtd/mtd0/name"), []byte("nor-boot\n"))
	if err := os.MkdirAll(k.p("/sys/class/mtd/mtd0ro"), 0o755); err != nil {
		t.Fatal(err)
	}
	k.fs = &fakeSys{
		onWrite: func(path, value string) {
			if path == k.p(block2mtdParam) && value == "/dev/vda,131072" {
				write(t, k.p("/sys/class/mtd/mtd1/name"), []byte("block2mtd: /dev/vda\n"))
			}
		},
		attach: func(r *ubiAttachReq) error {
			if r.UBINum != -1 || r.MTDNum != 1 || r.VIDHdrOffset != 0 || r.MaxBEBPer1024 != 0 {
				t.Errorf("attach req %+v", r)
			}
			write(t, k.p("/sys/class/ubi/ubi0/mtd_num"), []byte("1\n"))
			write(t, k.p("/sys/class/ubi/ubi0/avail_eraseblocks"), []byte("20\n"))
			write(t, k.p("/sys/class/ubi/ubi0/eraseblock_size"), []byte("130944\n"))
			r.UBINum = 0
			return nil
		},
		mkvol: func(r *ubiMkvolReq) error {
			write(t, k.p("/sys/class/ubi/ubi0/ubi0_0/name"), r.Name[:r.NameLen])
			return nil
		},
	}
	return k
}

func (k *flashKernel) p(path string) string { return filepath.Join(k.root, path) }

func (k *flashKernel) boot(fstype string) *boot {
	return &boot{Root: k.root, Cmdline: "uroute.datafs=" + fstype, Sys: k.fs}
}

func erased(n int) []byte { return bytes.Repeat([]byte{0xff}, n) }

func TestMountDataUBIFS(t *testing.T) {
	k := newFlashKernel(t, erased(1<<20))
	if err := k.boot("ubifs").mountData(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"block2mtd=/dev/vda,131072", "dirty_expire_centisecs=1", "dirty_writeback_centisecs=1"}; !reflect.DeepEqual(k.fs.writes, want) {
		t.Errorf("writes %q, want %q", k.fs.writes, want)
	}
	if want := []string{"attach ubi_ctrl mtd1", "mkvol ubi0 data 2618880"}; !reflect.DeepEqual(k.fs.ioctls, want) {
		t.Errorf("ioctls %q, want %q", k.fs.ioctls, want)
	}
	if want := []string{"ubi0:data data ubifs"}; !reflect.DeepEqual(k.fs.mounts, want) {
		t.Errorf("mounts %q, want %q", k.fs.mounts, want)
	}
	// Again (uinit run twice, or the devices left from before): nothing is
	// added, the same volume is mounted.
	k.fs.writes, k.fs.ioctls, k.fs.mounts = nil, nil, nil
	if err := k.boot("ubifs").mountData(); err != nil {
		t.Fatal(err)
	}
	if len(k.fs.writes) != 2 || len(k.fs.ioctls) != 0 || !reflect.DeepEqual(k.fs.mounts, []string{"ubi0:data data ubifs"}) {
		t.Errorf("second run: writes %q ioctls %q mounts %q", k.fs.writes, k.fs.ioctls, k.fs.mounts)
	}
}

func TestMountDataJFFS2(t *testing.T) {
	k := newFlashKernel(t, erased(1<<20))
	if err := k.boot("jffs2").mountData(); err != nil {
		t.Fatal(err)
	}
	if len(k.fs.ioctls) != 0 || !reflect.DeepEqual(k.fs.mounts, []string{"mtd1 data jffs2"}) {
		t.Errorf("ioctls %q mounts %q", k.fs.ioctls, k.fs.mounts)
	}
}

// Every failure is one error naming the cause, /data becomes a tmpfs, and
// nothing is written to a disk that was refused.
func TestMountDataFlashFailures(t *testing.T) {
	ext := erased(1 << 20)
	ext[1080], ext[1081] = 0x53, 0xEF
	for _, tc := range []struct {
		name    string
		fstype  string
		disk    []byte
		setup   func(k *flashKernel)
		wantErr string
		writes  int
	}{
		{"no disk", "ubifs", nil, nil, "/dev/vda: no such file or directory", 0},
		{"zero-filled", "ubifs", make([]byte, 1<<20), nil, "zero-filled disk (erased flash reads 0xFF", 0},
		{"zero-filled jffs2", "jffs2", make([]byte, 1<<20), nil, "zero-filled disk", 0},
		{"ext4 disk", "ubifs", ext, nil, "holds an ext file system", 0},
		{"odd size", "ubifs", erased(1<<20 + 512), nil, "not a whole number (at least 4) of 128 KiB erase blocks", 0},
		{"tiny", "ubifs", erased(256 << 10), nil, "at least 4", 0},
		{"no block2mtd", "ubifs", erased(1 << 20), func(k *flashKernel) {
			os.RemoveAll(k.p("/sys/module/block2mtd"))
		}, "block2mtd module not loaded", 0},
		{"block2mtd refuses", "ubifs", erased(1 << 20), func(k *flashKernel) { k.fs.writeErr = unix.EINVAL },
			`block2mtd "/dev/vda,131072": invalid argument`, 1},
		{"no mtd appears", "jffs2", erased(1 << 20), func(k *flashKernel) { k.fs.onWrite = nil },
			`no MTD device named "block2mtd: /dev/vda" appeared`, 1},
		{"attach fails", "ubifs", erased(1 << 20), func(k *flashKernel) { k.fs.attach = nil },
			"attach UBI to mtd1: no such device (dmesg has UBI's reason)", 3},
		{"mkvol fails", "ubifs", erased(1 << 20), func(k *flashKernel) { k.fs.mkvol = nil },
			`ubi0: make volume "data" of 20 LEBs: no space left on device`, 3},
		{"mount fails", "ubifs", erased(1 << 20), func(k *flashKernel) {
			k.fs.mountErr = map[string]error{"data ubifs": unix.EINVAL}
		}, "mount ubi0:data (ubifs) on /data: invalid argument", 3},
		{"no vm sysctls", "ubifs", erased(1 << 20), func(k *flashKernel) { os.RemoveAll(k.p("/proc/sys/vm")) },
			"block2mtd writes would reach the disk only after 30 s: /proc/sys/vm/dirty_expire_centisecs: ", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFlashKernel(t, tc.disk)
			if tc.setup != nil {
				tc.setup(k)
			}
			err := k.boot(tc.fstype).mountData()
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("error %v, want one with %q", err, tc.wantErr)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tc.fstype+" on /dev/vda: ") && !strings.HasPrefix(msg, "mount ") {
				t.Errorf("error does not start with the file system and device: %q", msg)
			}
			if !strings.HasSuffix(msg, "; /data is a tmpfs, the DB will not persist") || strings.Contains(msg, "\n") {
				t.Errorf("not one line ending in the tmpfs fallback: %q", msg)
			}
			if n := len(k.fs.mounts); n == 0 || k.fs.mounts[n-1] != "tmpfs data tmpfs" {
				t.Errorf("mounts %q, want the tmpfs last", k.fs.mounts)
			}
			if len(k.fs.writes) != tc.writes {
				t.Errorf("writes %q, want %d", k.fs.writes, tc.writes)
			}
		})
	}
}

// norKernel fakes the QEMU tests' NOR: phram, whose parameter adds the
// device, next to a read-only boot partition.
func norKernel(t *testing.T) *flashKernel {
	k := newFlashKernel(t, nil)
	os.RemoveAll(k.p("/sys/class/mtd"))
	write(t, k.p(phramParam), nil)
	write(t, k.p("/sys/class/mtd/mtd0/name"), []byte("boot\n"))
	write(t, k.p("/sys/class/mtd/mtd0/flags"), []byte("0x800\n"))
	k.fs.onWrite = func(path, value string) {
		if path == k.p(phramParam) && value == "nor,0x90000000,3Mi,64ki" {
			write(t, k.p("/sys/class/mtd/mtd1/name"), []byte("nor\n"))
			write(t, k.p("/sys/class/mtd/mtd1/flags"), []byte("0xc00\n"))
		}
	}
	return k
}

func TestMountDataMTDPartition(t *testing.T) {
	for _, fs := range []string{"jffs2", "ubifs"} {
		t.Run(fs, func(t *testing.T) {
			k := norKernel(t)
			b := &boot{Root: k.root, Cmdline: "uroute.datafs=" + fs + " phram.phram=nor,0x90000000,3Mi,64ki uroute.data=mtd:nor", Sys: k.fs}
			if err := b.mountData(); err != nil {
				t.Fatal(err)
			}
			// phram added once; no block2mtd, no write-back sysctls.
			if want := []string{"phram=nor,0x90000000,3Mi,64ki"}; !reflect.DeepEqual(k.fs.writes, want) {
				t.Errorf("writes %q, want %q", k.fs.writes, want)
			}
			want := []string{"mtd1 data jffs2"}
			if fs == "ubifs" {
				want = []string{"ubi0:data data ubifs"}
				if ioctls := []string{"attach ubi_ctrl mtd1", "mkvol ubi0 data 2618880"}; !reflect.DeepEqual(k.fs.ioctls, ioctls) {
					t.Errorf("ioctls %q, want %q", k.fs.ioctls, ioctls)
				}
			}
			if !reflect.DeepEqual(k.fs.mounts, want) {
				t.Errorf("mounts %q, want %q", k.fs.mounts, want)
			}
			// Again: the device is there, nothing written.
			k.fs.writes, k.fs.mounts = nil, nil
			if err := b.mountData(); err != nil || len(k.fs.writes) != 0 {
				t.Errorf("second run: %v, writes %q", err, k.fs.writes)
			}
		})
	}
}

func TestMountDataMTDPartitionRefused(t *testing.T) {
	for _, tc := range []struct{ dev, want string }{
		{"mtd:boot", `mtd0 ("boot") is read-only (flags 0x800); left untouched`},
		{"mtd:nope", `no MTD partition named "nope" (there are: mtd0 "boot")`},
	} {
		k := norKernel(t)
		b := &boot{Root: k.root, Cmdline: "uroute.datafs=jffs2 uroute.data=" + tc.dev, Sys: k.fs}
		err := b.mountData()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), "/data is a tmpfs, the DB will not persist") {
			t.Errorf("%s: %v, want %q", tc.dev, err, tc.want)
		}
		if !reflect.DeepEqual(k.fs.mounts, []string{"tmpfs data tmpfs"}) {
			t.Errorf("%s: mounts %q", tc.dev, k.fs.mounts)
		}
	}
}
