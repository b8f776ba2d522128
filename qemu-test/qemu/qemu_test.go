package qemu

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

func mustMachine(t *testing.T, name string) Machine {
	t.Helper()
	m, err := MachineByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// The command lines scripts/run-qemu.sh built before it became a wrapper
// (its --dry-run output, split into words), so the tests, the demo and
// the script boot the very guests they booted before.
func TestStandardMatchesTheOldScript(t *testing.T) {
	nics := " -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01,romfile=" +
		" -netdev hubport,id=n1,hubid=1 -device virtio-net-pci,netdev=n1,mac=52:54:00:12:34:02,romfile="
	rp := " -device pcie-root-port,id=rp1,slot=1,chassis=1"
	for _, tc := range []struct {
		arch, tty, want string
	}{
		{"amd64", "ttyS0", "-M q35 -accel tcg -m 512"},
		{"arm64", "ttyAMA0", "-M virt -cpu cortex-a57 -accel tcg -m 512"},
		{"armv7", "ttyAMA0", "-M virt,highmem=off -cpu cortex-a15 -accel tcg -m 512"},
		{"mipsle", "ttyS0", "-M malta -accel tcg -m 256"},
	} {
		m := mustMachine(t, tc.arch)
		spec := Spec{Machine: m, Devices: Standard(Kernel{Kernel: "/k", Initrd: "/i"}, Serial{}, "", nil, "")}
		got := spec.Args()
		// -append's value has a space: compare it apart.
		want := strings.Fields(tc.want + " -nodefaults -nographic -no-reboot -kernel /k -initrd /i -append X -serial stdio" + nics)
		if m.PCIe {
			want = append(want, strings.Fields(rp)...)
		}
		want[indexOf(want, "-append")+1] = "console=" + tc.tty + " quiet"
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n got %q\nwant %q", tc.arch, got, want)
		}
	}
}

func indexOf(s []string, v string) int {
	for i, x := range s {
		if x == v {
			return i
		}
	}
	return -1
}

func TestOptionsSpecEveryOption(t *testing.T) {
	o, err := ParseOptions([]string{"mipsle", "--kernel", "/k", "--initrd", "/i", "--data", "/d.img",
		"--qmp", "/q.sock", "--console", "/c.log", "--append", "uroute.datafs=jffs2 x=1", "--mem", "128",
		"--timeout", "30", "--reuse", "--", "-s", "-S"})
	if err != nil {
		t.Fatal(err)
	}
	if o.Timeout != 30*time.Second || !o.Reuse || o.DryRun {
		t.Errorf("options %+v", o)
	}
	got := o.Spec().Args()
	want := []string{"-M", "malta", "-accel", "tcg", "-m", "128", "-nodefaults", "-nographic", "-no-reboot",
		"-kernel", "/k", "-initrd", "/i", "-append", "console=ttyS0 quiet uroute.datafs=jffs2 x=1",
		"-serial", "file:/c.log",
		"-drive", "file=/d.img,if=none,id=data,format=raw", "-device", "virtio-blk-pci,drive=data",
		"-netdev", "hubport,id=n0,hubid=0", "-device", "virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01,romfile=",
		"-netdev", "hubport,id=n1,hubid=1", "-device", "virtio-net-pci,netdev=n1,mac=52:54:00:12:34:02,romfile=",
		"-qmp", "unix:/q.sock,server=on,wait=off", "-s", "-S"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("\n got %q\nwant %q", got, want)
	}
}

func TestParseOptionsErrors(t *testing.T) {
	for _, args := range [][]string{
		nil, {"sparc"}, {"amd64", "--mem"}, {"amd64", "--mem", "lots"}, {"amd64", "--timeout", "0"},
		{"amd64", "--frobnicate"}, {"amd64", "extra"},
	} {
		if _, err := ParseOptions(args); !errors.Is(err, ErrUsage) {
			t.Errorf("%q: err %v, want ErrUsage", args, err)
		}
	}
	for _, args := range [][]string{{"amd64", "--help"}, {"--help"}, {"-h"}} {
		if _, err := ParseOptions(args); !errors.Is(err, ErrHelp) {
			t.Errorf("%q: %v", args, err)
		}
	}
}

// A U-Boot boot (no -kernel): firmware in flash, A/B slots on a disk, a
// second disk, a guest that may reboot inside QEMU.
func TestFirmwareBoot(t *testing.T) {
	spec := Spec{Machine: mustMachine(t, "armv7"), Reboot: true, Devices: []Device{
		BIOS{File: "/u-boot.bin"},
		PFlash{File: "/env.img", Unit: 1},
		Serial{},
		Disk{File: "/flash.img"},
		Disk{File: "/log.img", Serial: "wlog", ReadOnly: true},
		NIC{Hub: 0, MAC: "52:54:00:12:34:01"},
		RootPort{},
	}}
	got := strings.Join(spec.Args(), " ")
	want := "-M virt,highmem=off -cpu cortex-a15 -accel tcg -m 512 -nodefaults -nographic" +
		" -bios /u-boot.bin -drive if=pflash,format=raw,unit=1,file=/env.img -serial stdio" +
		" -drive file=/flash.img,if=none,id=disk0,format=raw -device virtio-blk-pci,drive=disk0" +
		" -drive file=/log.img,if=none,id=disk1,format=raw,readonly=on -device virtio-blk-pci,drive=disk1,serial=wlog" +
		" -netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01,romfile=" +
		" -device pcie-root-port,id=rp1,slot=1,chassis=1"
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestRootPortOnlyWithPCIe(t *testing.T) {
	spec := Spec{Machine: mustMachine(t, "mipsle"), Devices: []Device{RootPort{}}}
	if strings.Contains(strings.Join(spec.Args(), " "), "pcie-root-port") {
		t.Errorf("malta has no PCIe: %q", spec.Args())
	}
}

func TestShellQuote(t *testing.T) {
	got := ShellQuote([]string{"qemu", "-append", "console=ttyS0 quiet", "it's", ""})
	want := `qemu -append 'console=ttyS0 quiet' 'it'\''s' ''`
	if got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestIsFlashFS(t *testing.T) {
	for in, want := range map[string]bool{
		"uroute.datafs=ubifs": true, "x uroute.datafs=jffs2 y": true,
		"uroute.datafs=ext4": false, "uroute.datafs=ubifsx": false, "": false,
	} {
		if IsFlashFS(in) != want {
			t.Errorf("IsFlashFS(%q) != %v", in, want)
		}
	}
}
