package qemutest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/internal/faultfs"
)

// The NICs of TestFaults' guest: two on one hub, as TestLifecycle's.
const (
	faultsMAC0 = "52:54:00:12:34:01"
	faultsMAC1 = "52:54:00:12:34:02"
)

// faultsProfileUp are the identities qemu-test/profiles/qemu-vlan-hub.toml
// derives from those two NICs.
var faultsProfileUp = []string{
	"rule=bridge/guest",
	"rule=bridge/lan",
	"rule=port/uplink,mac=" + faultsMAC0 + ",vid=10",
	"rule=port/lan,mac=" + faultsMAC1 + ",vid=10",
	"rule=port/lan,mac=" + faultsMAC1 + ",vid=20",
}

// TestFaults boots the amd64 image on faults of its data disk. It runs on
// amd64 only: the faults are in ifmgrd and uinit, which are the same Go on
// every architecture, and the lifecycle test covers the rest.
//
// full-disk: a 64 MiB ext4 data disk filled to the last block (mkdir gets
// ENOSPC, even for root). ifmgrd used to exit "DB location is not
// writable ... no space left on device", uinit restarted it 10 times and
// gave up: no bridge, no VLAN. Now the profile comes up from memory and
// `ifctl status` says why nothing persists; after `rm /data/filler` and
// `ifctl resync` the DB is written, and a reboot keeps every unit.
func TestFaults(t *testing.T) {
	a := ArchByName("amd64")
	if !slices.ContainsFunc(SelectedArches(), func(s Arch) bool { return s.Name == a.Name }) {
		t.Skip("amd64 is not in UROUTE_QEMU_ARCHES")
	}
	kernel := Requirements(t, a)
	initrd := BuildImage(t, a, Profile("qemu-vlan-hub"))
	t.Run("full-disk", func(t *testing.T) {
		disk := NewDataDisk(t, 64)
		fillDisk(t, disk)
		boot := func() *VM {
			vm := Boot(t, Config{Arch: a, Kernel: kernel, Initrd: initrd,
				NICs: []NIC{{0, faultsMAC0}, {0, faultsMAC1}}, Data: disk})
			if _, err := vm.WaitShell(a.Scale(120 * time.Second)); err != nil {
				t.Fatal(err)
			}
			return vm
		}
		vm := boot()
		units := waitProfileUp(t, vm, a)
		st := guestStatus(t, vm, a)
		if st.DB != ":memory:" || !strings.Contains(st.DBProblem, "no space left on device") {
			t.Fatalf("on a full disk: db %q, db_problem %q; want :memory: and the reason", st.DB, st.DBProblem)
		}
		if out := vm.MustRun("ifctl status", a.Scale(10*time.Second)); !strings.Contains(out, "db NOT PERSISTING: running from memory") {
			t.Errorf("ifctl status does not say that nothing persists:\n%s", out)
		}
		if strings.Contains(vm.Console(), "restart 1 of") {
			t.Errorf("ifmgrd exited on the full disk and was restarted")
		}
		t.Logf("full disk: profile up from memory; status: %s", st.DBProblem)

		// Space comes back: the next check writes what memory holds.
		vm.MustRun("rm /data/filler", a.Scale(10*time.Second))
		vm.MustRun("ifctl resync", a.Scale(30*time.Second))
		st = guestStatus(t, vm, a)
		if st.DB != "/data/uroute/ifmgr.db" || st.DBProblem != "" || st.DBSize == 0 {
			t.Fatalf("after rm /data/filler and resync: db %q (%d bytes), db_problem %q", st.DB, st.DBSize, st.DBProblem)
		}
		if err := vm.Type("uroute-uinit shutdown -r\n"); err != nil {
			t.Fatal(err)
		}
		if err := vm.WaitExit(a.Scale(30 * time.Second)); err != nil {
			t.Fatalf("clean reboot: %v", err)
		}
		vm.Close()

		vm = boot()
		again := waitProfileUp(t, vm, a)
		for id, name := range units {
			if again[id] != name {
				t.Errorf("%s: %s after the reboot, %s when it ran from memory", id, again[id], name)
			}
		}
		if st := guestStatus(t, vm, a); st.DB != "/data/uroute/ifmgr.db" || st.DBProblem != "" || st.Commits != 0 {
			t.Errorf("after the reboot: db %q, db_problem %q, %d commits (want the disk, no problem, 0)", st.DB, st.DBProblem, st.Commits)
		}
	})
}

// fillDisk fills the ext4 image's file system to its last block with
// /filler, through a loop mount on the host (root only).
func fillDisk(t *testing.T, disk string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to loop-mount the data disk and fill it")
	}
	mnt := t.TempDir()
	if out, err := exec.Command("mount", "-o", "loop", disk, mnt).CombinedOutput(); err != nil {
		t.Fatalf("mount -o loop %s: %v: %s", disk, err, out)
	}
	// Root fills the reserved blocks too, as ifmgrd (root) would.
	faultfs.Fill(t, mnt)
	probeErr := os.Mkdir(filepath.Join(mnt, "probe"), 0o700)
	if b, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v: %s", err, b)
	}
	if !errors.Is(probeErr, syscall.ENOSPC) {
		t.Fatalf("the disk is not full: mkdir gave %v, want ENOSPC", probeErr)
	}
}

// waitProfileUp waits until every identity of faultsProfileUp is up and
// returns the interface name of each.
func waitProfileUp(t *testing.T, vm *VM, a Arch) map[string]string {
	t.Helper()
	deadline := time.Now().Add(a.Scale(60 * time.Second))
	for {
		var list []ifmgr.Info
		err := vm.RunJSON("ifctl list -j", &list, a.Scale(10*time.Second))
		names := map[string]string{}
		for _, in := range list {
			if in.State == "up" {
				names[in.Identity] = in.Name
			}
		}
		missing := slices.DeleteFunc(slices.Clone(faultsProfileUp), func(id string) bool { return names[id] != "" })
		if err == nil && len(missing) == 0 {
			return names
		}
		if time.Now().After(deadline) {
			t.Fatalf("the profile did not come up (%v): missing %q; ifctl list: %+v", err, missing, list)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func guestStatus(t *testing.T, vm *VM, a Arch) ifmgr.Status {
	t.Helper()
	var st ifmgr.Status
	if err := vm.RunJSON("ifctl status -j", &st, a.Scale(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return st
}
