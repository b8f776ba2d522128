package qemutest

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/uroute/uroute/qemu-test/qemu"
)

// Lines of real consoles: a clean mipsle boot, and what the checks must
// catch (u-root's init loading modules out of order, a failed uinit step,
// ifmgrd warnings, a panic).
func TestErrorLines(t *testing.T) {
	clean := []string{
		"qemu: qemu-system-mipsel: warning: hub 0 is not connected to host network",
		"[    0.000000] Linux version 6.1.0-50-4kc-malta (debian-kernel@lists.debian.org)",
		"[    0.894313] Problem parsing in-kernel X.509 certificate list",
		"2026/11/29 15:15:53 Welcome to u-root!",
		"init: 2026/11/29 15:15:53 Setting console log level to 5...",
		"[    3.402622] cgroup: Unknown subsys name 'hugetlb'",
		"uinit: mounts: ok",
		"uinit: modules: ok",
		"uinit: data: ok",
		`$ time=2026-11-29T15:15:56.046Z level=INFO msg="ifmgrd serving" socket=/run/ifmgr.sock`,
		`time=2026-11-29T15:15:56.411Z level=INFO msg=created name=bridge0 ifindex=4 identity="rule=bridge/guest"`,
	}
	if got := errorLines(clean); len(got) != 0 {
		t.Errorf("a clean boot has error lines: %q", got)
	}
	bad := []string{
		"[    5.517066] 8021q: Unknown symbol mrp_request_join (err -2)",
		`init: 2026/11/29 15:08:49 InstallModules: can't install "/lib/modules/8021q.ko": no such file or directory`,
		"uinit: data: /dev/vda: no file system (blank disk); /data is a tmpfs, the DB will not persist",
		"uinit: modules: 1 of 28 modules failed: ubifs.ko: exec format error",
		`time=2026-11-29T15:15:56.411Z level=WARN msg="allocation DB was unreadable"`,
		"panic: runtime error: index out of range",
	}
	if got := errorLines(append(clean, bad...)); !reflect.DeepEqual(got, bad) {
		t.Errorf("got %q\nwant %q", got, bad)
	}
}

func TestFormatPhases(t *testing.T) {
	ph := []Phase{{"first output", 500 * time.Millisecond}, {"u-root init", 6 * time.Second},
		{"uinit console", 8 * time.Second}, {"ifmgrd serving", 9 * time.Second}}
	got := FormatPhases(ph, 8500*time.Millisecond)
	want := "first output +500ms (500ms), u-root init +5.5s (6s), uinit console +2s (8s), shell answers +500ms (8.5s), ifmgrd serving +500ms (9s)"
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
	if got := FormatPhases(ph[:1], 0); got != "first output +500ms (500ms), no answer from the shell" {
		t.Errorf("no shell: %s", got)
	}
}

// Config keeps building what it built before the qemu package, and takes
// firmware boots and extra disks as devices.
func TestConfigArgs(t *testing.T) {
	a := ArchByName("armv7")
	got := strings.Join(Config{Arch: a, Kernel: "/k", Initrd: "/i", Data: "/d", QMP: "/q",
		NICs: []NIC{{0, "52:54:00:12:34:01"}, {0, "52:54:00:12:34:02"}}, Append: "x=1"}.Args(), " ")
	want := "-M virt,highmem=off -cpu cortex-a15 -accel tcg -m 512 -nodefaults -nographic -no-reboot" +
		" -kernel /k -initrd /i -append console=ttyAMA0 quiet x=1 -serial stdio" +
		" -drive file=/d,if=none,id=data,format=raw -device virtio-blk-pci,drive=data" +
		" -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01,romfile=" +
		" -netdev hubport,id=n1,hubid=0 -device virtio-net-pci,netdev=n1,mac=52:54:00:12:34:02,romfile=" +
		" -device pcie-root-port,id=rp1,slot=1,chassis=1 -qmp unix:/q,server=on,wait=off"
	if got != want {
		t.Errorf("kernel boot:\n got %s\nwant %s", got, want)
	}
	got = strings.Join(Config{Arch: a, Data: "/flash.img", Reboot: true, NICs: []NIC{},
		Devices: []qemu.Device{qemu.BIOS{File: "/u-boot.bin"}, qemu.Disk{File: "/wlog.img"}}}.Args(), " ")
	want = "-M virt,highmem=off -cpu cortex-a15 -accel tcg -m 512 -nodefaults -nographic" +
		" -serial stdio -drive file=/flash.img,if=none,id=data,format=raw -device virtio-blk-pci,drive=data" +
		" -device pcie-root-port,id=rp1,slot=1,chassis=1 -bios /u-boot.bin" +
		" -drive file=/wlog.img,if=none,id=disk0,format=raw -device virtio-blk-pci,drive=disk0"
	if got != want {
		t.Errorf("firmware boot:\n got %s\nwant %s", got, want)
	}
}

func TestPrefixWriterWholeLines(t *testing.T) {
	var out strings.Builder
	w := &prefixWriter{w: &out, prefix: "qemu: "}
	for _, piece := range []string{"qemu-system-arm:", " warning: ", "hub 2 is not connected to host network\nqemu-system-arm: warning: hub 0", " is not connected to host network\n"} {
		w.Write([]byte(piece))
	}
	want := "qemu: qemu-system-arm: warning: hub 2 is not connected to host network\nqemu: qemu-system-arm: warning: hub 0 is not connected to host network\n"
	if out.String() != want {
		t.Errorf("got %q, want %q", out.String(), want)
	}
	if got := errorLines(strings.Split(strings.TrimSpace(out.String()), "\n")); len(got) != 0 {
		t.Errorf("QEMU's hub warnings count as errors: %q", got)
	}
}
