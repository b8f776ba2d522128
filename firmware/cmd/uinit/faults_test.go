package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCmdlineUnknownKeys: every uroute.* argument uinit does not know, and
// every known one left empty, gets its own console line naming it (and,
// for a misspelling, the key that was probably meant).
func TestCmdlineUnknownKeys(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    []string // console lines of the cmdline step
	}{
		{"console=ttyS0 uroute.data=/dev/vdb uroute.datafs=ext4", []string{"uinit: cmdline: ok"}},
		{"quiet uroute.dtaafs=ubifs", []string{
			`uinit: cmdline: unknown kernel argument uroute.dtaafs=ubifs ignored (did you mean uroute.datafs?)`,
		}},
		{"uroute.data= uroute.datafs=ubifs", []string{
			`uinit: cmdline: uroute.data is empty: using the default /dev/vda`,
		}},
		{"uroute.daat=/dev/vdb uroute.bogus uroute.datafs=", []string{
			`uinit: cmdline: unknown kernel argument uroute.daat=/dev/vdb ignored (did you mean uroute.data?)`,
			`uinit: cmdline: unknown kernel argument uroute.bogus ignored (known: uroute.data, uroute.datafs, uroute.slot, uroute.skipped, uroute.datalog)`,
			`uinit: cmdline: uroute.datafs is empty: using the default ext4`,
		}},
		{"routerdata=x foo.uroute.data=y", []string{"uinit: cmdline: ok"}}, // not ours
		// What U-Boot's boot script (firmware/uboot/boot.cmd) and the crash
		// test pass: known, and an empty uroute.skipped is normal.
		{"console=ttyAMA0 uroute.slot=A uroute.skipped=", []string{"uinit: cmdline: ok"}},
		{"uroute.slot=B uroute.skipped=A uroute.datalog=/dev/vdb", []string{"uinit: cmdline: ok"}},
	} {
		var out bytes.Buffer
		b := &boot{Root: t.TempDir(), Cmdline: tc.cmdline, Out: &out, Sys: &fakeSys{}}
		b.Run()
		var got []string
		for _, l := range strings.Split(out.String(), "\n") {
			if strings.HasPrefix(l, "uinit: cmdline:") {
				got = append(got, l)
			}
		}
		if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
			t.Errorf("%q:\n got %q\nwant %q", tc.cmdline, got, tc.want)
		}
	}
}

// TestMountDataWriteProtected: the kernel refuses a read-write mount of a
// write-protected disk with EACCES, which reads as "permission denied".
// uinit names the write protection and mounts the disk read-only, so the
// DB can still be read.
func TestMountDataWriteProtected(t *testing.T) {
	ext := make([]byte, 8192)
	ext[1080], ext[1081] = 0x53, 0xEF
	for _, tc := range []struct {
		name    string
		ro      string // /sys/class/block/vda/ro
		errs    map[string]error
		wantErr []string
		mounts  []string
	}{
		{"write-protected", "1\n", map[string]error{"data ext4": unix.EACCES},
			[]string{"/dev/vda is write-protected", "mounted read-only on /data", "nothing persists"},
			[]string{"/dev/vda data ext4", "/dev/vda data ext4 ro"}},
		{"write-protected, EROFS", "1\n", map[string]error{"data ext4": unix.EROFS},
			[]string{"/dev/vda is write-protected"},
			[]string{"/dev/vda data ext4", "/dev/vda data ext4 ro"}},
		{"real permission problem", "0\n", map[string]error{"data ext4": unix.EACCES},
			[]string{"permission denied", "/data is a tmpfs"},
			[]string{"/dev/vda data ext4", "tmpfs data tmpfs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, filepath.Join(root, "dev/vda"), ext)
			write(t, filepath.Join(root, "sys/class/block/vda/ro"), []byte(tc.ro))
			fs := &fakeSys{mountErr: tc.errs, recordRO: true}
			b := &boot{Root: root, Sys: fs}
			err := b.mountData()
			if err == nil {
				t.Fatal("no error: a degraded /data must be reported")
			}
			for _, w := range tc.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if strings.Join(fs.mounts, "|") != strings.Join(tc.mounts, "|") {
				t.Errorf("mounts %q, want %q", fs.mounts, tc.mounts)
			}
		})
	}
}

// TestProbeDataDamagedSuperblock: an ext4 whose primary superblock is gone
// but whose backups are intact is named as such, with the e2fsck command
// that repairs it, instead of "not blank; left untouched". The command is
// then run on a copy and must make the file system whole again.
func TestProbeDataDamagedSuperblock(t *testing.T) {
	mkfs, err := exec.LookPath("mkfs.ext4")
	if err != nil {
		t.Skip("mkfs.ext4 not installed (scripts/deps.sh installs e2fsprogs)")
	}
	for _, tc := range []struct {
		blockSize int
		size      int64
		backup    string
	}{
		{1024, 64 << 20, "-b 8193 -B 1024"},
		{4096, 256 << 20, "-b 32768 -B 4096"},
	} {
		t.Run(strings.Fields(tc.backup)[3], func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(img, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(img, tc.size); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command(mkfs, "-q", "-F", "-b", strconv.Itoa(tc.blockSize), img).CombinedOutput(); err != nil {
				t.Fatalf("mkfs: %v: %s", err, out)
			}
			if err := probeData(img, "ext4"); err != nil {
				t.Fatalf("intact file system: %v", err)
			}
			// Wipe the primary superblock, as a torn write would.
			f, err := os.OpenFile(img, os.O_RDWR, 0)
			if err != nil {
				t.Fatal(err)
			}
			f.WriteAt(make([]byte, 1024), 1024)
			f.Close()
			err = probeData(img, "ext4")
			if err == nil {
				t.Fatal("damaged superblock not reported")
			}
			for _, w := range []string{"primary superblock", "damaged", "e2fsck " + tc.backup + " " + img} {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			e2fsck, lerr := exec.LookPath("e2fsck")
			if lerr != nil {
				return
			}
			args := append([]string{"-f", "-y"}, strings.Fields(tc.backup)...)
			out, _ := exec.Command(e2fsck, append(args, img)...).CombinedOutput() // exit 1: "errors corrected"
			if err := probeData(img, "ext4"); err != nil {
				t.Fatalf("after the advised e2fsck: %v\n%s", err, out)
			}
		})
	}
}

// TestProbeDataGarbageStaysGarbage: bytes that merely look like a backup
// superblock's magic are not called an ext4.
func TestProbeDataGarbageStaysGarbage(t *testing.T) {
	img := filepath.Join(t.TempDir(), "junk.img")
	b := make([]byte, 9<<20)
	b[5000] = 7
	binary.LittleEndian.PutUint16(b[8193*1024+56:], extMagic) // magic, but no matching geometry
	write(t, img, b)
	err := probeData(img, "ext4")
	if err == nil || !strings.Contains(err.Error(), "not blank; left untouched") || strings.Contains(err.Error(), "e2fsck") {
		t.Fatalf("probeData = %v, want the plain not-blank error", err)
	}
}
