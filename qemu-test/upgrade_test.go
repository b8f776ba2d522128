package qemutest

import (
	"bytes"
	"compress/gzip"
	"crypto/ed25519"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"crypto/sha256"
	"encoding/binary"

	bolt "go.etcd.io/bbolt"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/persist"
	"github.com/uroute/uroute/qemu-test/qemu"
)

// ubootArches are the machines Debian's U-Boot boots (u-boot-qemu's
// qemu_arm64 and qemu_arm). amd64 keeps its direct boot (PC routers boot
// through their BIOS/EFI, not U-Boot); Debian's maltael U-Boot never
// autoboots and has no setexpr, part or working disk under QEMU's malta
// (docs/upgrade.md, "Machines").
func ubootArches() []Arch {
	var out []Arch
	for _, a := range SelectedArches() {
		if a.Name == "arm64" || a.Name == "armv7" {
			out = append(out, a)
		}
	}
	return out
}

// ubootBinary is Debian's U-Boot for the arch's QEMU machine.
func ubootBinary(a Arch) string {
	board := map[string]string{"arm64": "qemu_arm64", "armv7": "qemu_arm"}[a.Name]
	return filepath.Join("/usr/lib/u-boot", board, "u-boot.bin")
}

// TestUpgrade is the router's firmware life on each U-Boot machine, one
// flash and one data partition throughout (docs/upgrade.md):
//
//   - factory: U-Boot boots slot A (v1); ifmgrd converges and the slot is
//     marked good; units are allocated;
//   - tamper: a flipped byte, a signature by an untrusted key, another
//     board's image and another architecture's are refused, and nothing
//     is written (env generation and slot B unchanged);
//   - upgrade: v2 into slot B; the next boot is B, with the same units and
//     no DB commit;
//   - powercut: QMP quit while an upgrade stands at each step (slot
//     half written, written, env copy torn) -> B boots again, same units;
//   - rollback: an image whose ifmgrd cannot start, with 2 attempts, and
//     the DB as that newer firmware might leave it (schema
//     persist.SchemaVersion+1, written on the host): A boots twice,
//     reboots itself each time, and U-Boot
//     falls back to B, whose status says why and which serves from memory,
//     leaving the newer DB as it was; put back, the units return.
//
// Each boot is a cost (10-20 s quiet, minutes on a loaded TCG host), so
// no two steps prove the same state: a cut once the slot is disarmed but
// not yet written leaves the environment as the half-written cut does,
// and the newer DB is crossed on the rollback's own fallback boot, which
// is the case the issue names (a rollback after a schema upgrade).
func TestUpgrade(t *testing.T) {
	arches := ubootArches()
	if len(arches) == 0 {
		t.Skip("no U-Boot machine selected (arm64, armv7)")
	}
	for _, a := range arches {
		t.Run(a.Name, func(t *testing.T) {
			kernel := Requirements(t, a)
			for _, tool := range []string{"mkimage", "dtc", "sfdisk", "mkenvimage"} {
				if _, err := exec.LookPath(tool); err != nil {
					t.Fatalf("%s missing: scripts/deps.sh installs it", tool)
				}
			}
			if _, err := os.Stat(ubootBinary(a)); err != nil {
				t.Fatalf("%v: scripts/deps.sh installs u-boot-qemu", err)
			}
			u := newUpgradeRig(t, a, kernel)
			for _, st := range []struct {
				name string
				fn   func(t *testing.T)
			}{
				{"factory", u.factory},
				{"tamper", u.tamper},
				{"upgrade", u.upgrade},
				{"powercut", u.powercut},
				{"rollback", u.rollback},
			} {
				if !t.Run(st.name, st.fn) {
					break
				}
			}
		})
	}
}

type upgradeRig struct {
	top    *testing.T
	arch   Arch
	dir    string
	kernel string
	cpio   string // base initramfs, trusting the test's signing key
	cpioGz []byte // cpio gzip'ed once, for every FIT the test builds
	key    string // private signing key (scripts/sign-image.sh's)
	flash  string // disk.img: the router's image flash
	nor    string // U-Boot's environment flash
	medium string // the upgrade medium, the guest's /dev/vdb
	qmp    string
	vm     *VM
	units  map[string]string // identity -> name, as the first boot made them
}

func newUpgradeRig(t *testing.T, a Arch, kernel string) *upgradeRig {
	u := &upgradeRig{top: t, arch: a, dir: t.TempDir(), kernel: kernel}
	u.key = filepath.Join(CacheDir(), "signing-key")
	pub := strings.TrimSpace(script(t, nil, "sign-image.sh", "--public-key"))
	u.cpio = buildTrustingImage(t, a, pub)
	u.compressOnce(t)
	v1 := u.fit(t, "v1", nil)
	out := filepath.Join(u.dir, "flash")
	script(t, nil, "make-flash.sh", a.Name, v1, out)
	u.flash, u.nor = filepath.Join(out, "disk.img"), filepath.Join(out, "nor.img")
	u.medium = filepath.Join(u.dir, "medium.img")
	if err := os.WriteFile(u.medium, make([]byte, 48<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	u.qmp = filepath.Join(u.dir, "qmp.sock")
	return u
}

// script runs scripts/NAME with UROUTE_CACHE set and returns its stdout.
func script(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(filepath.Join(RepoRoot(), "scripts", name), args...)
	cmd.Env = append(append(os.Environ(), "UROUTE_CACHE="+CacheDir()), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args, err, stderr.String())
	}
	return string(out)
}

// buildTrustingImage is the arch's image with the stock board profile and
// pub as its trusted upgrade key, cached by content like every image.
func buildTrustingImage(t *testing.T, a Arch, pub string) string {
	t.Helper()
	profile, err := qemu.BoardProfile(RepoRoot(), a)
	if err != nil {
		t.Fatal(err)
	}
	return BuildImageVariant(t, a, profile, qemu.Variant{Name: "upgrade", Env: []string{"UPGRADE_KEYS=" + pub}, Files: []string{pub}})
}

// compressOnce gzips the initramfs, and arm64's kernel (its FIT holds it
// gzip'ed), once for the test's four FITs: build-fit.sh takes both as
// they are, and gzip -9 of ~50 MB four times cost minutes on a loaded host.
func (u *upgradeRig) compressOnce(t *testing.T) {
	t.Helper()
	base, err := os.ReadFile(u.cpio)
	if err != nil {
		t.Fatal(err)
	}
	u.cpioGz = gzipBytes(t, base)
	if u.arch.Name != "arm64" {
		return
	}
	k, err := os.ReadFile(u.kernel)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(u.dir, "kernel")
	os.MkdirAll(dir, 0o755)
	if v, err := os.ReadFile(filepath.Join(filepath.Dir(u.kernel), "kernel.version")); err == nil {
		os.WriteFile(filepath.Join(dir, "kernel.version"), v, 0o644)
	}
	u.kernel = filepath.Join(dir, "vmlinuz.gz")
	if err := os.WriteFile(u.kernel, gzipBytes(t, k), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fit builds a FIT of version from the base initramfs, with overlay (a
// gzip'ed cpio appended: the kernel unpacks both, the later file wins) if
// not nil.
func (u *upgradeRig) fit(t *testing.T, version string, overlay []byte) string {
	t.Helper()
	ramdisk := filepath.Join(u.dir, version+".cpio.gz")
	if err := os.WriteFile(ramdisk, append(bytes.Clone(u.cpioGz), overlay...), 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(u.dir, version+".itb")
	script(t, []string{"VERSION=" + version, "KERNEL=" + u.kernel}, "build-fit.sh", u.arch.Name, ramdisk, out)
	return out
}

// signed signs fit with the build's key into a file.
func (u *upgradeRig) signed(t *testing.T, fit string) string {
	t.Helper()
	out := strings.TrimSuffix(fit, ".itb") + ".img"
	script(t, nil, "sign-image.sh", fit, out)
	return out
}

func gzipBytes(t *testing.T, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := zw.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// newcFile is a cpio "newc" archive holding one regular file and the
// trailer: the overlay that breaks an image.
func newcFile(name string, mode uint32, data []byte) []byte {
	var b bytes.Buffer
	entry := func(name string, mode uint32, data []byte) {
		fmt.Fprintf(&b, "070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			1, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		b.WriteString(name + "\x00")
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
		b.Write(data)
		for b.Len()%4 != 0 {
			b.WriteByte(0)
		}
	}
	entry(name, mode, data)
	entry("TRAILER!!!", 0, nil)
	return b.Bytes()
}

// putMedium writes an image to the start of the upgrade medium, as dd to
// a USB stick would; the guest drops its cache of /dev/vdb before reading.
func (u *upgradeRig) putMedium(t *testing.T, img string) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(u.medium, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, 0); err != nil {
		t.Fatal(err)
	}
}

var bootingSlot = regexp.MustCompile(`uroute: booting slot ([AB])`)

// boot starts QEMU on the flash (U-Boot from -bios, its environment in
// pflash unit 1, the image flash as the first virtio disk, the medium as
// the second) and returns the slot U-Boot boots. A guest reboot ends
// QEMU, so every boot is visible to the test.
func (u *upgradeRig) boot(t *testing.T) string {
	t.Helper()
	if u.vm != nil {
		u.vm.Close()
	}
	u.vm = Boot(u.top, Config{Arch: u.arch, Data: u.flash, QMP: u.qmp,
		NICs: []NIC{{0, mac0}, {1, mac1}},
		Devices: []qemu.Device{
			qemu.BIOS{File: ubootBinary(u.arch)},
			qemu.PFlash{File: u.nor, Unit: 1},
			qemu.Disk{File: u.medium, ID: "medium"},
		},
		Timeout: u.arch.Scale(20 * time.Minute)})
	u.vm.Use(t)
	m, next, err := u.vm.WaitLine(0, bootingSlot, u.arch.Scale(60*time.Second))
	if err != nil {
		t.Fatalf("U-Boot booted no slot: %v", err)
	}
	// U-Boot's whole cost: a direct -kernel boot starts the kernel at 0.
	if _, _, err := u.vm.WaitLine(next, regexp.MustCompile(`Starting kernel`), u.arch.Scale(60*time.Second)); err == nil {
		t.Logf("%s: U-Boot started the kernel of slot %s %v after QEMU started", u.arch.Name, m[1], u.vm.Since().Round(100*time.Millisecond))
	}
	return m[1]
}

// serve waits for the shell and for the slot to be marked good (ifmgrd
// converged), and returns ifctl list.
func (u *upgradeRig) serve(t *testing.T) []ifmgr.Info {
	t.Helper()
	ready, err := u.vm.WaitShell(u.arch.Scale(150 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := u.vm.WaitLine(0, regexp.MustCompile(`uinit: boot: slot [AB] marked good`), u.arch.Scale(120*time.Second)); err != nil {
		t.Fatalf("the slot was not marked good: %v", err)
	}
	t.Logf("%s: shell %v, marked good %v after QEMU started", u.arch.Name,
		ready.Round(100*time.Millisecond), u.vm.Since().Round(100*time.Millisecond))
	var list []ifmgr.Info
	if err := u.vm.RunJSON("ifctl list -j", &list, u.arch.Scale(15*time.Second)); err != nil {
		t.Fatal(err)
	}
	return list
}

// bootStatus is uroute-uinit status -j (firmware/cmd/uinit).
type bootStatus struct {
	Slot     string         `json:"slot"`
	Version  string         `json:"version"`
	Why      string         `json:"why"`
	Good     bool           `json:"good"`
	Trial    string         `json:"trial"`
	Rollback string         `json:"rollback"`
	Order    string         `json:"boot_order"`
	Left     map[string]int `json:"attempts_left"`
	Slots    map[string]struct {
		Version string `json:"version"`
		Error   string `json:"error"`
	} `json:"slots"`
	EnvGen uint64 `json:"env_generation"`
}

func (u *upgradeRig) status(t *testing.T) bootStatus {
	t.Helper()
	var st bootStatus
	if err := u.vm.RunJSON("uroute-uinit status -j", &st, u.arch.Scale(30*time.Second)); err != nil {
		t.Fatal(err)
	}
	return st
}

func (u *upgradeRig) ifmgrStatus(t *testing.T) ifmgr.Status {
	t.Helper()
	var st ifmgr.Status
	if err := u.vm.RunJSON("ifctl status -j", &st, u.arch.Scale(15*time.Second)); err != nil {
		t.Fatal(err)
	}
	return st
}

// sameUnits checks that every unit the first boot confirmed is there
// under the same name.
func (u *upgradeRig) sameUnits(t *testing.T, list []ifmgr.Info) {
	t.Helper()
	now := byIdentity(list)
	for id, name := range u.units {
		if now[id] != name {
			t.Errorf("%s was %s, now %q", id, name, now[id])
		}
	}
	if t.Failed() {
		t.Logf("ifctl list:\n%s", formatList(list))
	}
}

// expectBoot boots and checks the slot and version that serve, that the
// units are the same and that the boot committed nothing to the DB.
func (u *upgradeRig) expectBoot(t *testing.T, slot, version string) bootStatus {
	t.Helper()
	if got := u.boot(t); got != slot {
		t.Fatalf("U-Boot booted slot %s, want %s", got, slot)
	}
	list := u.serve(t)
	u.sameUnits(t, list)
	st := u.status(t)
	if st.Slot != slot || st.Version != version || !st.Good {
		t.Errorf("status: slot %s version %s good %v, want slot %s version %s good", st.Slot, st.Version, st.Good, slot, version)
	}
	if c := u.ifmgrStatus(t).Commits; c != 0 {
		t.Errorf("%d DB commits at boot, want 0: every unit was known", c)
	}
	return st
}

func (u *upgradeRig) factory(t *testing.T) {
	if got := u.boot(t); got != "A" {
		t.Fatalf("factory flash booted slot %s, want A", got)
	}
	// The stock profile's units: bridges lan and guest, VLANs 10 and 20
	// on each NIC.
	list := u.serve(t)
	u.units = byIdentity(list)
	if len(u.units) < 4 {
		t.Fatalf("only %d units:\n%s", len(u.units), formatList(list))
	}
	t.Logf("units:\n%s", formatList(list))
	st := u.status(t)
	if st.Slot != "A" || st.Version != "v1" || !st.Good || st.Left["A"] != 3 || st.Left["B"] != 0 {
		t.Fatalf("status %+v", st)
	}
}

// refused runs an upgrade from the medium holding img and checks that it
// fails naming want, and that nothing was written.
func (u *upgradeRig) refused(t *testing.T, img, want string) {
	t.Helper()
	before := u.status(t)
	u.putMedium(t, img)
	out, status, err := u.vm.Run("uroute-uinit upgrade /dev/vdb", u.arch.Scale(120*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if status == 0 || !strings.Contains(out, "upgrade: refused:") || !strings.Contains(out, want) {
		t.Errorf("upgrade of %s: status %d, want a refusal naming %q:\n%s", filepath.Base(img), status, want, out)
	}
	after := u.status(t)
	if after.EnvGen != before.EnvGen || after.Slots["B"] != before.Slots["B"] {
		t.Errorf("a refused upgrade wrote: env generation %d -> %d, slot B %+v -> %+v",
			before.EnvGen, after.EnvGen, before.Slots["B"], after.Slots["B"])
	}
}

func (u *upgradeRig) tamper(t *testing.T) {
	v2 := u.signed(t, u.fit(t, "v2", nil))
	good, err := os.ReadFile(v2)
	if err != nil {
		t.Fatal(err)
	}
	// One byte flipped in the middle of the kernel: the signature fails
	// (and so would the hash).
	flipped := filepath.Join(u.dir, "flipped.img")
	bad := bytes.Clone(good)
	bad[len(bad)/3] ^= 0x01
	os.WriteFile(flipped, bad, 0o644)
	u.refused(t, flipped, "signature check failed")

	// Signed by a key the image does not trust.
	otherPub, priv, _ := ed25519.GenerateKey(nil)
	otherKey := filepath.Join(u.dir, "other-key")
	os.WriteFile(otherKey, []byte(hex.EncodeToString(priv.Seed())+"\n"), 0o600)
	os.WriteFile(otherKey+".pub", []byte(hex.EncodeToString(otherPub)+"\n"), 0o644)
	untrusted := filepath.Join(u.dir, "untrusted.img")
	script(t, []string{"UROUTE_SIGNING_KEY=" + otherKey}, "sign-image.sh", strings.TrimSuffix(v2, ".img")+".itb", untrusted)
	u.refused(t, untrusted, "does not trust")

	// Another board's image and another architecture's, properly
	// signed. They are refused on what the FIT says, so their kernel and
	// initramfs are small stand-ins (a real one costs a minute of gzip
	// under a loaded TCG host).
	kernel := filepath.Join(u.dir, "stand-in-kernel")
	os.WriteFile(kernel, bytes.Repeat([]byte("kernel"), 1000), 0o644)
	cpio := filepath.Join(u.dir, "stand-in.cpio")
	os.WriteFile(cpio, newcFile("init", 0o100755, []byte("stand-in")), 0o644)
	board := filepath.Join(u.dir, "otherboard.itb")
	script(t, []string{"VERSION=v2", "BOARD=ubnt-edgerouter-x", "KERNEL=" + kernel}, "build-fit.sh", u.arch.Name, cpio, board)
	u.refused(t, u.signed(t, board), "for board ubnt-edgerouter-x")
	otherArch := map[string]string{"arm64": "armv7", "armv7": "arm64"}[u.arch.Name]
	arch := filepath.Join(u.dir, "otherarch.itb")
	script(t, []string{"VERSION=v2", "KERNEL=" + kernel}, "build-fit.sh", otherArch, cpio, arch)
	u.refused(t, u.signed(t, arch), "image is for "+otherArch)

	// And the good one still goes in after all that: the upgrade test.
	u.putMedium(t, v2)
}

func (u *upgradeRig) upgrade(t *testing.T) {
	out := u.vm.MustRun("uroute-uinit upgrade /dev/vdb", u.arch.Scale(180*time.Second))
	if !strings.Contains(out, "upgrade: done") {
		t.Fatalf("upgrade:\n%s", out)
	}
	st := u.status(t)
	if st.Order != "B A" || st.Left["B"] != 3 || st.Trial != "B" || st.Slots["B"].Version != "v2" {
		t.Fatalf("after the upgrade: %+v", st)
	}
	u.vm.Type("uroute-uinit shutdown -r\n")
	if err := u.vm.WaitExit(u.arch.Scale(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	st = u.expectBoot(t, "B", "v2")
	if st.Trial != "" || st.Order != "B A" || st.Left["A"] != 3 {
		t.Errorf("after B marked itself good: %+v", st)
	}
}

// powercut cuts the power while an upgrade of slot A stands at each of
// its steps; slot B (v2) must boot every time, and its units with it.
func (u *upgradeRig) powercut(t *testing.T) {
	v3 := u.signed(t, u.fit(t, "v3", nil))
	u.putMedium(t, v3)
	for _, at := range []string{"half-written", "written", "torn-env"} {
		t.Run(at, func(t *testing.T) {
			u.vm.Use(t)
			from := u.vm.mark()
			if err := u.vm.Type("uroute-uinit upgrade -stop-at " + at + " /dev/vdb\n"); err != nil {
				t.Fatal(err)
			}
			if _, _, err := u.vm.WaitLine(from, regexp.MustCompile(`upgrade: stopped at `+at), u.arch.Scale(180*time.Second)); err != nil {
				t.Fatal(err)
			}
			u.vm.PowerCut()
			st := u.expectBoot(t, "B", "v2")
			if at == "written" && st.Slots["A"].Version != "v3" {
				t.Errorf("slot A after a cut once written: %+v", st.Slots["A"])
			}
		})
		if t.Failed() {
			return
		}
	}
}

// rollback upgrades slot A to an image whose ifmgrd cannot start, with
// two attempts, and leaves the DB as that newer firmware might (schema
// 2): each trial boot reboots itself, then U-Boot boots B, which serves
// from memory without touching the newer DB; put back, the units return.
func (u *upgradeRig) rollback(t *testing.T) {
	broken := newcFile("bin/ifmgrd", 0o100755, []byte("this is not a program\n"))
	img := u.signed(t, u.fit(t, "v4-broken", gzipBytes(t, broken)))
	u.putMedium(t, img)
	out := u.vm.MustRun("uroute-uinit upgrade -attempts 2 /dev/vdb", u.arch.Scale(180*time.Second))
	if !strings.Contains(out, "upgrade: done") {
		t.Fatalf("upgrade:\n%s", out)
	}
	// Powered off rather than rebooted: the DB is made newer on the host.
	u.vm.Type("uroute-uinit shutdown\n")
	if err := u.vm.WaitExit(u.arch.Scale(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	orig, newer := u.newerDB(t)
	want, _ := os.ReadFile(newer)

	for attempt := 1; attempt <= 2; attempt++ {
		if got := u.boot(t); got != "A" {
			t.Fatalf("trial boot %d: U-Boot booted slot %s, want A", attempt, got)
		}
		if _, _, err := u.vm.WaitLine(0, regexp.MustCompile(`uinit: boot: trial of slot A failed`), u.arch.Scale(240*time.Second)); err != nil {
			t.Fatalf("trial boot %d did not give up: %v", attempt, err)
		}
		if err := u.vm.WaitExit(u.arch.Scale(60 * time.Second)); err != nil {
			t.Fatalf("trial boot %d did not reboot: %v", attempt, err)
		}
	}

	if got := u.boot(t); got != "B" {
		t.Fatalf("after the failed trials U-Boot booted slot %s, want B", got)
	}
	list := u.serve(t)
	st := u.status(t)
	if st.Slot != "B" || st.Version != "v2" || !st.Good || st.Rollback != "A" ||
		!strings.Contains(st.Why, "rollback: slot A (v4-broken)") || st.Left["A"] != 0 || st.Order != "B A" {
		t.Errorf("status after the rollback: %+v", st)
	}
	t.Logf("status: %s", st.Why)
	// persist.ErrSchemaTooNew's text, in ifmgrd's "running from memory" line.
	if !strings.Contains(u.vm.Console(), "DB schema is newer than this build") {
		t.Errorf("ifmgrd did not say the DB is from newer firmware")
	}
	for _, rule := range []string{"bridge/lan", "bridge/guest"} {
		if !isUp(list, rule, "") {
			t.Errorf("%s not up: the router does not serve:\n%s", rule, formatList(list))
		}
	}
	if st := u.ifmgrStatus(t); st.DB == "/data/uroute/ifmgr.db" {
		t.Errorf("ifmgrd writes the newer DB: %+v", st)
	}
	u.vm.Type("uroute-uinit shutdown\n")
	if err := u.vm.WaitExit(u.arch.Scale(60 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if got := u.getDB(t, filepath.Join(u.dir, "after.db")); sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatalf("the newer firmware's DB was modified by the older one")
	}

	// The DB back as this firmware wrote it: every unit returns, and
	// the boot commits nothing.
	u.putDB(t, orig)
	u.expectBoot(t, "B", "v2")
}

// dataOffset is the data partition's offset in the image flash
// (scripts/make-flash.sh: partition 5 at sector 204800).
const dataOffset = 204800 * 512

// debugfs runs e2fsprogs' debugfs on the flash's data partition.
func (u *upgradeRig) debugfs(t *testing.T, write bool, req string) string {
	t.Helper()
	args := []string{"-R", req}
	if write {
		args = append([]string{"-w"}, args...)
	}
	args = append(args, fmt.Sprintf("%s?offset=%d", u.flash, dataOffset))
	out, err := exec.Command("debugfs", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("debugfs %s: %v\n%s", req, err, out)
	}
	return string(out)
}

// getDB copies the allocation DB out of the (powered-off) flash.
func (u *upgradeRig) getDB(t *testing.T, to string) []byte {
	t.Helper()
	os.Remove(to)
	u.debugfs(t, false, "dump -p /uroute/ifmgr.db "+to)
	b, err := os.ReadFile(to)
	if err != nil || len(b) == 0 {
		t.Fatalf("no DB copied out of the data partition: %v", err)
	}
	return b
}

// putDB replaces the allocation DB on the flash with the file from.
func (u *upgradeRig) putDB(t *testing.T, from string) {
	t.Helper()
	u.debugfs(t, true, "rm /uroute/ifmgr.db")
	u.debugfs(t, true, "write "+from+" /uroute/ifmgr.db")
}

// newerDB copies the DB out of the (powered-off) flash and puts in its
// place the same DB as a newer firmware would leave it (schema persist.SchemaVersion+1); it
// returns both files.
func (u *upgradeRig) newerDB(t *testing.T) (orig, newer string) {
	t.Helper()
	orig = filepath.Join(u.dir, "ifmgr.db")
	b := u.getDB(t, orig)
	newer = filepath.Join(u.dir, "ifmgr-v2.db")
	if err := os.WriteFile(newer, b, 0o600); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(newer, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		meta := tx.Bucket([]byte("meta"))
		if meta == nil {
			return fmt.Errorf("no meta bucket")
		}
		return meta.Put([]byte("schema"), binary.BigEndian.AppendUint32(nil, persist.SchemaVersion+1))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	u.putDB(t, newer)
	return orig, newer
}
