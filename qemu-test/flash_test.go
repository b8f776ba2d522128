package qemutest

import (
	"bytes"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
)

// flashArches are the machines whose Debian kernels have block2mtd, UBI and
// UBIFS: the generic amd64 kernel (not the default cloud one) and malta.
// UROUTE_QEMU_ARCHES selects among them as for the other tests.
func flashArches() []Arch {
	var out []Arch
	for _, a := range SelectedArches() {
		switch a.Name {
		case "amd64":
			a.Flavour, a.KernelCache = "amd64", "kernel-amd64-generic"
		case "mipsle":
		default:
			continue
		}
		out = append(out, a)
	}
	return out
}

// NewFlashDisk makes a data disk of sizeMB filled with 0xFF, as erased
// flash reads: UBI formats such a device when uinit attaches it.
func NewFlashDisk(t testing.TB, sizeMB int) string {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "flash.img")
	if err := os.WriteFile(disk, bytes.Repeat([]byte{0xff}, sizeMB<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	return disk
}

// TestFlash puts /data on UBIFS over emulated flash (uroute.datafs=ubifs:
// block2mtd on the virtio disk, UBI, UBIFS; docs/flash.md) and checks the
// allocation DB across a clean reboot and power cuts, on generic amd64 and
// malta:
//
//   - format: an erased disk is formatted by UBI and UBIFS at first boot
//     and ifmgrd keeps its DB there; ifctl creates three bridges;
//   - reboot: after "uroute-uinit shutdown -r" UBIFS mounts without
//     recovery, ifmgrd loads every record (the profile's and the three
//     bridges', which it then drops because their links died with the
//     boot, as designed) and the profile's interfaces keep their units;
//   - powercut: QMP quit at a random moment of an ifctl create storm; the
//     next boot mounts UBIFS (recovering it), the DB opens undamaged, no
//     name is listed twice, no unit is leaked, and every allocation
//     confirmed before the cut is in the DB (strict: block2mtd keeps its
//     writes in a page cache, and ifmgrd flushes the disk under it after
//     every commit; docs/flash.md).
func TestFlash(t *testing.T) {
	for _, a := range flashArches() {
		t.Run(a.Name, func(t *testing.T) {
			kernel := Requirements(t, a)
			f := &flashRig{lifecycle: lifecycle{top: t, arch: a, kernel: kernel,
				// The lifecycle test's profile: on malta its image is
				// then built once for both tests.
				initrd: BuildImage(t, a, Profile("qemu-vlan-hub")),
				data:   NewFlashDisk(t, 32),
				qmp:    filepath.Join(t.TempDir(), "qmp.sock"),
				nics:   DefaultNICs,
				append: "uroute.datafs=ubifs"}}
			start := time.Now()
			for _, st := range []struct {
				name string
				fn   func(t *testing.T)
			}{
				{"format", f.format},
				{"reboot", f.reboot},
				{"powercut", f.powercut},
			} {
				if !t.Run(st.name, st.fn) {
					break
				}
			}
			t.Logf("%s: flash test %v (image build not counted)", a.Name, time.Since(start).Round(time.Second))
		})
	}
}

// flashRig is the lifecycle test's rig on a flash disk, with the
// records ifmgrd loads at each boot checked too.
type flashRig struct {
	lifecycle
	adhoc []string // bridges ifctl created before the reboot
}

// flashDB is where uinit points ifmgrd; on UBIFS here.
const flashDB = "/data/uroute/ifmgr.db"

var (
	// Only the count is read from the line: its last field (db=) can carry
	// the start of a command the harness typed, glued on by the console
	// (n_tty writes a line's text and its newline in two steps, and echoes
	// input between them); the DB's path comes from ifctl status.
	reRecordsLoaded = regexp.MustCompile(`msg="allocation records loaded" records=(\d+) `)
	reDropped       = regexp.MustCompile(`msg="record dropped" name=(\S+) why="([^"]*)"`)
)

// boot starts the guest on the flash disk, waits for the shell, for
// ifmgrd's "records loaded" line and for the profile to converge, and
// checks that /data is UBIFS and the DB on it. It returns ifctl list and
// the number of records ifmgrd loaded.
func (f *flashRig) boot(t *testing.T) ([]ifmgr.Info, int) {
	t.Helper()
	list := f.lifecycle.boot(t)
	m, _, err := f.vm.WaitLine(0, reRecordsLoaded, f.arch.Scale(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if db := f.lifecycle.status(t).DB; db != flashDB {
		t.Fatalf("ifmgrd keeps its records in %s, want %s", db, flashDB)
	}
	loaded, _ := strconv.Atoi(m[1])
	if out := f.vm.MustRun("cat /proc/mounts", 10*time.Second); !strings.Contains(out, "ubi0:data /data ubifs ") {
		t.Fatalf("/data is not ubi0:data on UBIFS:\n%s", out)
	}
	return list, loaded
}

// dmesg is the kernel log lines containing substr.
func (f *flashRig) dmesg(t *testing.T, substr string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(f.vm.MustRun("dmesg", f.arch.Scale(20*time.Second)), "\n") {
		if strings.Contains(l, substr) {
			out = append(out, strings.TrimSpace(l))
		}
	}
	return out
}

// format: first boot on erased flash.
func (f *flashRig) format(t *testing.T) {
	list, loaded := f.boot(t)
	if loaded != 0 {
		t.Errorf("%d records loaded from a fresh disk", loaded)
	}
	for _, want := range []string{"ubi0: empty MTD device detected", "UBIFS (ubi0:0): default file-system created"} {
		if len(f.dmesg(t, want)) == 0 {
			t.Errorf("dmesg has no %q", want)
		}
	}
	if st := f.status(t); st.DB != flashDB || st.DBSize == 0 {
		t.Errorf("ifmgrd's DB: %q, %d bytes; want %s", st.DB, st.DBSize, flashDB)
	}
	f.units = byIdentity(list)
	for i := 0; i < 3; i++ {
		out := strings.TrimSpace(f.vm.MustRun("ifctl create bridge", f.arch.Scale(10*time.Second)))
		name := regexp.MustCompile(`(?m)^bridge\d+$`).FindString(out)
		if name == "" {
			t.Fatalf("ifctl create bridge: %q", out)
		}
		f.adhoc = append(f.adhoc, name)
	}
	t.Logf("profile:\n%screated %v", formatList(list), f.adhoc)
}

// reboot: a clean reboot, then every record is back.
func (f *flashRig) reboot(t *testing.T) {
	f.vm.Use(t)
	f.shutdown(t)
	list, loaded := f.boot(t)
	if rec := f.dmesg(t, "recovery needed"); len(rec) > 0 {
		t.Errorf("UBIFS needed recovery after a clean reboot: %q", rec)
	}
	if want := len(f.units) + len(f.adhoc); loaded != want {
		t.Errorf("%d records loaded, want %d (%d of the profile, %d made by ifctl)", loaded, want, len(f.units), len(f.adhoc))
	}
	// ifctl's bridges died with the boot; ifmgrd drops their records.
	dropped := map[string]string{}
	for _, m := range f.dropped() {
		dropped[m[1]] = m[2]
	}
	for _, n := range f.adhoc {
		if dropped[n] != "interface vanished" {
			t.Errorf("record of %s: dropped %q, want \"interface vanished\"", n, dropped[n])
		}
	}
	got := byIdentity(list)
	for id, name := range f.units {
		if got[id] != name {
			t.Errorf("%s: %s after the reboot, %s before", id, got[id], name)
		}
	}
	if len(got) != len(f.units) {
		t.Errorf("%d interfaces after the reboot, %d before:\n%s", len(got), len(f.units), formatList(list))
	}
}

// dropped is every "record dropped" line of the current boot: name, why.
func (f *flashRig) dropped() [][]string {
	return reDropped.FindAllStringSubmatch(f.vm.Console(), -1)
}

// powercut: rounds of (ifctl create storm, QMP quit, boot), with the
// strict durability check of TestNOR: every bridge reported created
// before the cut is in the DB the next boot loads. block2mtd keeps its
// writes in the page cache of the disk under it; ifmgrd flushes that disk
// after every commit (firmware/daemon/block2mtd.go), and this is what
// proves it.
func (f *flashRig) powercut(t *testing.T) {
	rounds := 2
	if *longRun {
		rounds = 20
	}
	if n, err := strconv.Atoi(os.Getenv("UROUTE_FLASH_ROUNDS")); err == nil {
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	f.vm.Use(t)
	if !strings.Contains(f.vm.Console(), "allocation DB on block2mtd: every commit is flushed to its disk") {
		t.Errorf("ifmgrd did not say it flushes block2mtd's disk after each commit")
	}
	var leakCheck []string
	total := 0
	for r := 1; r <= rounds; r++ {
		// The kernel's default write-back (dirty pages written after
		// 30 s) instead of uinit's 10 ms: with it every cut lost every
		// commit of the last half minute (docs/flash.md), so only
		// ifmgrd's own flush of the disk can pass this.
		f.vm.MustRun("echo 3000 > /proc/sys/vm/dirty_expire_centisecs; echo 500 > /proc/sys/vm/dirty_writeback_centisecs", f.arch.Scale(10*time.Second))
		confirmed, delay := cutAndCollect(t, &f.lifecycle, r, rng)
		_, loaded := f.boot(t)
		recovery := f.dmesg(t, "UBIFS (ubi0:0): recovery")
		if strings.Contains(f.vm.Console(), dbRebuilt) {
			t.Errorf("round %d: the DB file was damaged and rebuilt from the kernel", r)
		}
		kept, inFlight := checkConfirmedOnFlash(t, r, f.vm, confirmed, leakCheck)
		leakCheck = f.leakCheck(t, r)
		total += len(confirmed)
		t.Logf("round %d: cut %v into the storm, %d bridges confirmed, %d of them in the DB at the next boot (%d records loaded, %d more in flight); %q",
			r, delay.Round(10*time.Millisecond), len(confirmed), kept, loaded, inFlight, recovery)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d power cuts, %d confirmed allocations, none lost", rounds, total)
}
