package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func TestParseCmdline(t *testing.T) {
	got := parseCmdline("console=ttyS0 quiet  uroute.data=/dev/vdb\tfoo=\"a b\" x=1 x=2\n")
	want := map[string]string{"console": "ttyS0", "quiet": "", "uroute.data": "/dev/vdb", "foo": "a b", "x": "2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseCmdline = %q, want %q", got, want)
	}
	if got := parseCmdline(""); len(got) != 0 {
		t.Errorf("empty cmdline = %q", got)
	}
}

func TestDataConfig(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    dataConfig
	}{
		{"console=ttyS0", dataConfig{"/dev/vda", "ext4"}},
		{"uroute.data=/dev/vdb uroute.datafs=ext2", dataConfig{"/dev/vdb", "ext2"}},
		{"uroute.data= uroute.datafs=", dataConfig{"/dev/vda", "ext4"}},
		{"uroute.datafs=vfat", dataConfig{"/dev/vda", "vfat"}},
	} {
		if got := dataConfigFrom(tc.cmdline); got != tc.want {
			t.Errorf("dataConfigFrom(%q) = %+v, want %+v", tc.cmdline, got, tc.want)
		}
	}
}

func TestMountPoints(t *testing.T) {
	m := mountPoints("rootfs / rootfs rw 0 0\nproc /proc proc rw 0 0\n/dev/vda /mnt/with\\040space ext4 rw 0 0\nbad\n")
	for _, p := range []string{"/", "/proc", "/mnt/with space"} {
		if !m[p] {
			t.Errorf("%q not found in %v", p, m)
		}
	}
	if m["/sys"] {
		t.Error("/sys reported mounted")
	}
}

func TestHasExtMagic(t *testing.T) {
	img := make([]byte, 4096)
	if ok, err := hasExtMagic(bytes.NewReader(img)); ok || err != nil {
		t.Errorf("zero image: %v, %v", ok, err)
	}
	img[1080], img[1081] = 0x53, 0xEF
	if ok, err := hasExtMagic(bytes.NewReader(img)); !ok || err != nil {
		t.Errorf("ext image: %v, %v", ok, err)
	}
	if ok, err := hasExtMagic(bytes.NewReader(img[:1000])); ok || err != nil {
		t.Errorf("short image: %v, %v", ok, err)
	}
}

func TestAllZero(t *testing.T) {
	big := make([]byte, 3<<20)
	if ok, err := allZero(bytes.NewReader(big), zeroCheckBytes); !ok || err != nil {
		t.Errorf("zero disk: %v, %v", ok, err)
	}
	big[zeroCheckBytes-1] = 1
	if ok, _ := allZero(bytes.NewReader(big), zeroCheckBytes); ok {
		t.Error("non-zero byte inside the first MiB missed")
	}
	big[zeroCheckBytes-1] = 0
	big[zeroCheckBytes] = 1 // past the checked range
	if ok, _ := allZero(bytes.NewReader(big), zeroCheckBytes); !ok {
		t.Error("byte past the first MiB counted")
	}
	if ok, _ := allZero(bytes.NewReader(make([]byte, 10)), zeroCheckBytes); !ok {
		t.Error("short zero disk")
	}
}

// fakeSys records calls instead of changing the kernel.
type fakeSys struct {
	mounts   []string
	mountErr map[string]error // by target
	modules  []string
	modErr   map[string]error // by file base name
	writes   []string         // base=value of each WriteFile
	writeErr error
	onWrite  func(path, value string)
	ioctls   []string
	attach   func(*ubiAttachReq) error
	mkvol    func(*ubiMkvolReq) error
}

func (f *fakeSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	f.mounts = append(f.mounts, fmt.Sprintf("%s %s %s", source, filepath.Base(target), fstype))
	return f.mountErr[filepath.Base(target)+" "+fstype]
}

func (f *fakeSys) FinitModule(fd int, params string, flags int) error {
	name, err := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", fd))
	if err != nil {
		return err
	}
	name = filepath.Base(name)
	f.modules = append(f.modules, name)
	return f.modErr[name]
}

// WriteFile writes like the kernel would (the file must exist) and then
// lets onWrite play the kernel's reaction.
func (f *fakeSys) WriteFile(path, value string) error {
	f.writes = append(f.writes, filepath.Base(path)+"="+value)
	if f.writeErr != nil {
		return f.writeErr
	}
	// Like sysfs and procfs: the attribute must exist.
	w, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := w.WriteString(value); err != nil {
		w.Close()
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	if f.onWrite != nil {
		f.onWrite(path, value)
	}
	return nil
}

func (f *fakeSys) UBIAttach(ctrl string, req *ubiAttachReq) error {
	f.ioctls = append(f.ioctls, fmt.Sprintf("attach %s mtd%d", filepath.Base(ctrl), req.MTDNum))
	if f.attach != nil {
		return f.attach(req)
	}
	return unix.ENODEV
}

func (f *fakeSys) UBIMkvol(dev string, req *ubiMkvolReq) error {
	f.ioctls = append(f.ioctls, fmt.Sprintf("mkvol %s %s %d", filepath.Base(dev), req.Name[:req.NameLen], req.Bytes))
	if f.mkvol != nil {
		return f.mkvol(req)
	}
	return unix.ENOSPC
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestMountPseudoIdempotent(t *testing.T) {
	root := t.TempDir()
	fs := &fakeSys{}
	b := &boot{Root: root, Sys: fs}
	if err := b.mountPseudo(); err != nil {
		t.Fatal(err)
	}
	if want := []string{"proc proc proc", "sysfs sys sysfs", "devtmpfs dev devtmpfs"}; !reflect.DeepEqual(fs.mounts, want) {
		t.Errorf("mounts = %q, want %q", fs.mounts, want)
	}
	// Once the mount table lists them, nothing is mounted again.
	write(t, filepath.Join(root, "proc/self/mounts"), []byte("proc /proc proc rw 0 0\nsysfs /sys sysfs rw 0 0\ndev /dev devtmpfs rw 0 0\n"))
	fs.mounts = nil
	if err := b.mountPseudo(); err != nil || len(fs.mounts) != 0 {
		t.Errorf("second run: %v, mounts %q", err, fs.mounts)
	}
	// EBUSY (mounted meanwhile) is no error; anything else is.
	fs.mountErr = map[string]error{"sys sysfs": unix.EBUSY, "dev devtmpfs": unix.EPERM}
	if err := os.Remove(filepath.Join(root, "proc/self/mounts")); err != nil {
		t.Fatal(err)
	}
	err := b.mountPseudo()
	if err == nil || !strings.Contains(err.Error(), "devtmpfs") || strings.Contains(err.Error(), "sysfs") {
		t.Errorf("errors: %v", err)
	}
}

func TestLoadModules(t *testing.T) {
	root := t.TempDir()
	fs := &fakeSys{modErr: map[string]error{"builtin.ko": unix.EEXIST, "broken.ko": unix.ENOEXEC}}
	b := &boot{Root: root, Sys: fs}
	if err := b.loadModules(); err != nil {
		t.Errorf("no load-order: %v", err)
	}
	for _, m := range []string{"a.ko", "builtin.ko", "broken.ko", "z.ko"} {
		write(t, filepath.Join(root, "lib/modules/uroute", m), []byte("\x7fELF"))
	}
	write(t, filepath.Join(root, "lib/modules/uroute/load-order"), []byte("z.ko\nbuiltin.ko\nmissing.ko\nbroken.ko\na.ko\n"))
	err := b.loadModules()
	if want := []string{"z.ko", "builtin.ko", "broken.ko", "a.ko"}; !reflect.DeepEqual(fs.modules, want) {
		t.Errorf("loaded %q, want %q (in load-order)", fs.modules, want)
	}
	if err == nil {
		t.Fatal("no error for missing and broken modules")
	}
	msg := err.Error()
	for _, s := range []string{"2 of 5", "missing.ko", "broken.ko"} {
		if !strings.Contains(msg, s) {
			t.Errorf("error %q lacks %q", msg, s)
		}
	}
	if strings.Contains(msg, "builtin.ko") {
		t.Errorf("EEXIST reported: %q", msg)
	}
}

func TestMountData(t *testing.T) {
	ext := make([]byte, 8192)
	ext[1080], ext[1081] = 0x53, 0xEF
	junk := make([]byte, 8192)
	junk[5000] = 7
	for _, tc := range []struct {
		name     string
		cmdline  string
		disk     []byte // nil: no device
		mountErr map[string]error
		wantErr  string // "" for success
		want     []string
	}{
		{"ext4", "", ext, nil, "", []string{"/dev/vda data ext4"}},
		{"other disk", "uroute.data=/dev/vdb", ext, nil, "", []string{"/dev/vdb data ext4"}},
		{"no disk", "", nil, nil, "/data is a tmpfs, the DB will not persist", []string{"tmpfs data tmpfs"}},
		{"blank", "", make([]byte, 8192), nil, "blank disk", []string{"tmpfs data tmpfs"}},
		{"not blank", "", junk, nil, "left untouched", []string{"tmpfs data tmpfs"}},
		{"mount fails", "", ext, map[string]error{"data ext4": unix.EINVAL}, "mount /dev/vda (ext4)", []string{"/dev/vda data ext4", "tmpfs data tmpfs"}},
		{"vfat unchecked", "uroute.datafs=vfat", junk, nil, "", []string{"/dev/vda data vfat"}},
		{"tmpfs fails too", "", nil, map[string]error{"data tmpfs": unix.ENOMEM}, "tmpfs on /data failed too", []string{"tmpfs data tmpfs"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			cfg := dataConfigFrom(tc.cmdline)
			if tc.disk != nil {
				write(t, filepath.Join(root, cfg.Device), tc.disk)
			}
			fs := &fakeSys{mountErr: tc.mountErr}
			b := &boot{Root: root, Cmdline: tc.cmdline, Sys: fs}
			err := b.mountData()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Errorf("error: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Errorf("error %v, want one with %q", err, tc.wantErr)
			}
			if !reflect.DeepEqual(fs.mounts, tc.want) {
				t.Errorf("mounts %q, want %q", fs.mounts, tc.want)
			}
		})
	}
}

func TestMountDataAlreadyMounted(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "proc/self/mounts"), []byte("/dev/vda /data ext4 rw 0 0\n"))
	fs := &fakeSys{}
	b := &boot{Root: root, Sys: fs}
	if err := b.mountData(); err != nil || len(fs.mounts) != 0 {
		t.Errorf("err %v, mounts %q", err, fs.mounts)
	}
}

// TestRunReportsEveryStep checks the console lines and that failures do
// not stop later steps.
func TestRunReportsEveryStep(t *testing.T) {
	root := t.TempDir()
	write(t, filepath.Join(root, "bin/ifmgrd"), []byte("#!/bin/sh\n"))
	write(t, filepath.Join(root, "lib/modules/uroute/load-order"), []byte("gone.ko\n"))
	var out bytes.Buffer
	var started []string
	b := &boot{
		Root: root,
		Out:  &out,
		Sys:  &fakeSys{mountErr: map[string]error{"proc proc": unix.EPERM}},
		Start: func(argv []string, _ io.Writer) error {
			started = argv
			return nil
		},
	}
	if n := b.Run(); n != 3 {
		t.Errorf("Run = %d failed steps, want 3\n%s", n, &out)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	prefixes := []string{"uinit: mounts: mount proc", "uinit: modules: 1 of 1 modules failed", "uinit: data: ", "uinit: ifmgrd: ok"}
	if len(lines) != len(prefixes) {
		t.Fatalf("output:\n%s", &out)
	}
	for i, p := range prefixes {
		if !strings.HasPrefix(lines[i], p) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], p)
		}
	}
	if want := []string{"/bin/ifmgrd", "--config", "/etc/uroute/board.toml", "--db", "/data/uroute/ifmgr.db", "--socket", "/run/ifmgr.sock"}; !reflect.DeepEqual(started, want) {
		t.Errorf("started %q, want %q", started, want)
	}
	for _, d := range []string{"run", "data/uroute"} {
		if st, err := os.Stat(filepath.Join(root, d)); err != nil || !st.IsDir() {
			t.Errorf("%s not made: %v", d, err)
		}
	}
}

func TestRunStepRecoversPanic(t *testing.T) {
	err := runStep(func() error { panic("boom") })
	if err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("runStep = %v", err)
	}
}

func TestIfmgrdMissing(t *testing.T) {
	b := &boot{Root: t.TempDir(), Start: func([]string, io.Writer) error { t.Error("started"); return nil }}
	if err := b.startIfmgrd(); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("err = %v", err)
	}
}

// fakeClock makes the supervisor's time deterministic.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Sleep(d time.Duration)   { c.now = c.now.Add(d) }
func (c *fakeClock) run(d time.Duration)     { c.now = c.now.Add(d) }
func (c *fakeClock) since(t time.Time) int64 { return int64(c.now.Sub(t) / time.Second) }

func TestSupervisorGivesUp(t *testing.T) {
	clk := &fakeClock{now: time.Unix(0, 0)}
	var out bytes.Buffer
	runs := 0
	s := &supervisor{
		Name:   "ifmgrd",
		Policy: policy{MaxRestarts: 4, Backoff: time.Second, MaxBackoff: 5 * time.Second, StableAfter: time.Minute},
		Out:    &out,
		Run:    func() error { runs++; clk.run(time.Second); return errors.New("exit status 1") },
		Sleep:  clk.Sleep,
		Now:    clk.Now,
	}
	if err := s.Loop(); err == nil {
		t.Error("Loop returned nil")
	}
	if runs != 5 {
		t.Errorf("runs = %d, want 5 (1 + 4 restarts)", runs)
	}
	// 5 runs of 1s and waits of 1+2+4+5 s.
	if got := clk.since(time.Unix(0, 0)); got != 5+12 {
		t.Errorf("elapsed %ds, want 17s", got)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 || !strings.Contains(lines[0], "restart 1 of 4 in 1s") || !strings.Contains(lines[3], "restart 4 of 4 in 5s") || !strings.Contains(lines[4], "gave up after 4 restarts") {
		t.Errorf("log:\n%s", &out)
	}
}

func TestSupervisorStableRunResets(t *testing.T) {
	clk := &fakeClock{now: time.Unix(0, 0)}
	var out bytes.Buffer
	runs := 0
	s := &supervisor{
		Name:   "ifmgrd",
		Policy: policy{MaxRestarts: 3, Backoff: time.Second, MaxBackoff: time.Minute, StableAfter: time.Minute},
		Out:    &out,
		Run: func() error {
			runs++
			switch {
			case runs == 3: // a long run after two quick failures
				clk.run(time.Hour)
			case runs == 6:
				return errStopped
			default:
				clk.run(time.Second)
			}
			return nil
		},
		Sleep: clk.Sleep,
		Now:   clk.Now,
	}
	if err := s.Loop(); !errors.Is(err, errStopped) {
		t.Errorf("Loop = %v, want errStopped", err)
	}
	if runs != 6 {
		t.Errorf("runs = %d, want 6\n%s", runs, &out)
	}
	// The hour-long run resets both the count and the wait.
	if !strings.Contains(out.String(), "after 1h0m0s; restart 1 of 3 in 1s\n") || !strings.Contains(out.String(), "restart 3 of 3 in 4s\n") {
		t.Errorf("log:\n%s", &out)
	}
}

// TestSuperviseMainRealProcess runs the supervisor on a real program that
// fails at once.
func TestSuperviseMainRealProcess(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "fail")
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	var out bytes.Buffer
	// The program does not exist, so each start fails.
	code := superviseMain([]string{"-max-restarts=2", "-backoff=1ms", "--", f.Name() + ".missing"}, &out)
	if code != 1 {
		t.Errorf("exit code %d", code)
	}
	if n := strings.Count(out.String(), "restart "); n != 2 || !strings.Contains(out.String(), "gave up") {
		t.Errorf("log:\n%s", &out)
	}
	if code := superviseMain(nil, io.Discard); code != 2 {
		t.Errorf("no program: exit %d", code)
	}
}
