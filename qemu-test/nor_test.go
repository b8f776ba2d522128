package qemutest

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/qemu-test/qemu"
)

// NOR flash that behaves like a router's, under QEMU.
//
// Malta's own 4 MiB CFI flash (QEMU pflash) cannot be used: Debian's
// 4kc-malta kernel describes it in its built-in device tree
// (1e000000.flash, "cfi-flash") and is built without
// CONFIG_MTD_PHYSMAP_OF, so no driver takes it, and binding physmap to it
// by hand fails too (docs/flash.md). Instead the guest's RAM is a host
// file mapped shared (memory-backend-file, share=on) and the kernel's
// phram driver makes the part above what the kernel uses (malta's 32-bit
// kernel without highmem uses the low 256 MiB; QEMU maps all RAM at
// physical 0x80000000) an MTD device. Every write is a CPU store into
// the host file's mapping: on the host (in its page cache, which QEMU's
// death does not lose) the moment it is made, as a NOR program is on the
// chip when it returns. A QMP quit keeps exactly what was written.
const (
	norKernelMB = 256        // RAM the guest kernel uses
	norMB       = 4          // RAM above it that phram maps
	norPhys     = 0x90000000 // physical address of RAM offset norKernelMB
	// norPhram is the MTD device: 3 MiB in 64 KiB erase blocks, the size of
	// malta's "User FS" partition (2.9 MiB) and of a small router's.
	norPhram = "nor,0x90000000,3Mi,64ki"
	norDB    = "/data/uroute/ifmgr.snap" // the mirrored store's snapshot
)

// sharedRAM backs the guest's whole RAM with a host file, mapped shared.
type sharedRAM struct {
	file string
	mb   int
}

// AddArgs implements qemu.Device.
func (s sharedRAM) AddArgs(c *qemu.CommandLine) {
	c.Add("-object", fmt.Sprintf("memory-backend-file,id=sharedram,size=%dM,mem-path=%s,share=on", s.mb, s.file),
		"-machine", "memory-backend=sharedram")
}

// newNORRAM makes the RAM file: the kernel's part sparse, the flash part
// erased (0xFF).
func newNORRAM(t testing.TB) string {
	t.Helper()
	file := filepath.Join(t.TempDir(), "ram-nor.img")
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate((norKernelMB + norMB) << 20); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(bytes.Repeat([]byte{0xff}, norMB<<20), norKernelMB<<20); err != nil {
		t.Fatal(err)
	}
	return file
}

// norRounds is 3, 40 with -long, or UROUTE_NOR_ROUNDS.
func norRounds() int {
	rounds := 3
	if *longRun {
		rounds = 40
	}
	if n, err := strconv.Atoi(os.Getenv("UROUTE_NOR_ROUNDS")); err == nil && n > 0 {
		rounds = n
	}
	return rounds
}

// TestNOR keeps ifmgrd's allocation DB on JFFS2 on NOR flash (phram over
// a shared host file, above) on malta, with the mirrored store (bbolt in
// RAM, every commit a snapshot on flash before it is confirmed):
//
//   - format: JFFS2 mounts the erased flash, ifmgrd runs mirrored, every
//     snapshot's size is logged (flash bytes per commit);
//   - steady: link flaps write nothing to flash;
//   - powercut: QMP quit at a random instant of an ifctl create storm, 3
//     rounds (40 with -long, UROUTE_NOR_ROUNDS=N). At each next boot,
//     strictly: every bridge ifmgrd had reported created before the cut
//     (its record was on flash before the link was made) is in the
//     snapshot ifmgrd loads (ifmgrd then drops it, its link having died
//     with the boot, and says so by name); no record no request made; no
//     name twice; no leaked unit.
func TestNOR(t *testing.T) {
	for _, a := range SelectedArches() {
		if a.Name != "mipsle" {
			continue
		}
		t.Run(a.Name, func(t *testing.T) {
			kernel := Requirements(t, a)
			r := &norRig{lifecycle: lifecycle{top: t, arch: a, kernel: kernel,
				initrd:  BuildImage(t, a, Profile("qemu-vlan-hub")),
				qmp:     filepath.Join(t.TempDir(), "qmp.sock"),
				nics:    DefaultNICs,
				mem:     norKernelMB + norMB,
				devices: []qemu.Device{sharedRAM{newNORRAM(t), norKernelMB + norMB}},
				db:      norDB,
				append:  "uroute.datafs=jffs2 phram.phram=" + norPhram + " uroute.data=mtd:nor"}}
			start := time.Now()
			defer func() {
				if r.vm != nil {
					r.collectBytes()
				}
				t.Logf("%s: NOR test %v (image build not counted); flash bytes per commit: %s", a.Name,
					time.Since(start).Round(time.Second), r.bytesSummary())
			}()
			for _, st := range []struct {
				name string
				fn   func(t *testing.T)
			}{
				{"format", r.format},
				{"steady", r.steady},
				{"powercut", r.powercut},
			} {
				if !t.Run(st.name, st.fn) {
					break
				}
			}
		})
	}
}

type norRig struct {
	lifecycle
	snapBytes []int // every "snapshot written" size seen
}

var (
	reSnapshot = regexp.MustCompile(`msg="persist: snapshot written" generation=(\d+) records=(\d+) bytes=(\d+)`)
	reMirrored = regexp.MustCompile(`msg="persist: allocation DB in RAM, mirrored to flash" snapshot=(\S+) generation=(\d+) records=(\d+)`)
	reCreated  = regexp.MustCompile(`msg=created name=(bridge\d+)`)
)

// boot starts the guest, waits for convergence, and checks that /data is
// JFFS2 on the NOR and that ifmgrd runs mirrored from it. It returns the
// snapshot generation ifmgrd loaded.
func (r *norRig) boot(t *testing.T) uint64 {
	t.Helper()
	list := r.lifecycle.boot(t)
	if r.units == nil {
		r.units = byIdentity(list)
	}
	m, _, err := r.vm.WaitLine(0, reMirrored, r.arch.Scale(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if m[1] != norDB {
		t.Fatalf("ifmgrd's snapshot is %s, want %s", m[1], norDB)
	}
	if out := r.vm.MustRun("cat /proc/mounts", 10*time.Second); !regexp.MustCompile(`(?m)^mtd\d+ /data jffs2 `).MatchString(out) {
		t.Fatalf("/data is not JFFS2 on the NOR:\n%s", out)
	}
	gen, _ := strconv.ParseUint(m[2], 10, 64)
	return gen
}

// collectBytes adds the snapshot sizes of the current VM's console; it is
// called once per VM, when the VM is done (cut, or the test's end).
func (r *norRig) collectBytes() {
	for _, m := range reSnapshot.FindAllStringSubmatch(r.vm.Console(), -1) {
		n, _ := strconv.Atoi(m[3])
		r.snapBytes = append(r.snapBytes, n)
	}
}

func (r *norRig) bytesSummary() string {
	if len(r.snapBytes) == 0 {
		return "none seen"
	}
	s := append([]int(nil), r.snapBytes...)
	sort.Ints(s)
	sum := 0
	for _, v := range s {
		sum += v
	}
	return fmt.Sprintf("%d commits, %d-%d bytes each (median %d), %d bytes in all (before JFFS2's compression and node headers)",
		len(s), s[0], s[len(s)-1], s[len(s)/2], sum)
}

// format: first boot on erased NOR.
func (r *norRig) format(t *testing.T) {
	if gen := r.boot(t); gen != 0 {
		t.Errorf("fresh flash: ifmgrd loaded snapshot generation %d", gen)
	}
	if st := r.status(t); st.DB != norDB || st.DBSize == 0 {
		t.Errorf("ifmgrd's DB: %q, %d bytes; want %s", st.DB, st.DBSize, norDB)
	}
	if n := len(reSnapshot.FindAllString(r.vm.Console(), -1)); n == 0 {
		t.Errorf("the profile's allocations wrote no snapshot")
	}
}

// steady: links going down and up (known hardware) write nothing.
func (r *norRig) steady(t *testing.T) {
	r.vm.Use(t)
	from := r.vm.mark()
	for i := 0; i < 5; i++ {
		r.vm.MustRun("ip link set eth1 down; ip link set eth1 up", r.arch.Scale(10*time.Second))
	}
	time.Sleep(r.arch.Scale(3 * time.Second))
	r.waitList(t, "eth1's VLANs back up", func(l []ifmgr.Info) bool { return isUp(l, "port/lan", mac1+",vid=10") })
	if n := countLines(r.vm.linesRange(from, r.vm.mark()), "snapshot written"); n != 0 {
		t.Errorf("5 flaps of eth1 wrote %d snapshots to flash, want 0", n)
	}
}

// powercut: rounds of (ifctl create storm, QMP quit, boot, strict checks).
func (r *norRig) powercut(t *testing.T) {
	rounds := norRounds()
	seed := uint64(time.Now().UnixNano())
	if s, err := strconv.ParseUint(os.Getenv("UROUTE_NOR_SEED"), 10, 64); err == nil {
		seed = s
	}
	t.Logf("seed %d (UROUTE_NOR_SEED), %d rounds", seed, rounds)
	rng := rand.New(rand.NewPCG(seed, 0))
	r.vm.Use(t)
	var totalConfirmed int
	var leakCheck []string // ifctl's bridge of the previous round's leak check
	for round := 1; round <= rounds; round++ {
		confirmed, delay := cutAndCollect(t, &r.lifecycle, round, rng)
		r.collectBytes()
		r.boot(t)
		kept, inFlight := checkConfirmedOnFlash(t, round, r.vm, confirmed, leakCheck)
		leakCheck = r.leakCheck(t, round)
		totalConfirmed += len(confirmed)
		t.Logf("round %d: cut %v into the storm: %d bridges confirmed, %d of them on flash at the next boot (%d more in flight)",
			round, delay.Round(10*time.Millisecond), len(confirmed), kept, inFlight)
		if t.Failed() {
			return
		}
	}
	t.Logf("%d power cuts, %d confirmed allocations, none lost", rounds, totalConfirmed)
}

// leakCheck runs the lifecycle's leak check (which creates one bridge)
// and returns the bridges it created.
func (lc *lifecycle) leakCheck(t *testing.T, round int) []string {
	t.Helper()
	var list []ifmgr.Info
	if err := lc.vm.RunJSON("ifctl list -j", &list, lc.arch.Scale(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	from := lc.vm.mark()
	lc.checkNoLeak(t, round, list)
	var made []string
	for _, m := range reCreated.FindAllStringSubmatch(strings.Join(lc.vm.linesRange(from, lc.vm.mark()), "\n"), -1) {
		made = append(made, m[1])
	}
	return made
}

// checkConfirmedOnFlash is the strict durability check after a power cut:
// every bridge ifmgrd reported created before the cut (its record was
// committed before the link was made) was in the DB this boot loaded,
// which ifmgrd shows by dropping it by name (its link died with the
// boot). Records beyond those may only be the previous leak check's
// bridge and at most one create in flight per storm loop (2). It returns
// how many confirmed ones were there and how many were in flight.
func checkConfirmedOnFlash(t *testing.T, round int, vm *VM, confirmed, leakCheck []string) (kept, inFlight int) {
	t.Helper()
	dropped := map[string]bool{}
	for _, m := range reDropped.FindAllStringSubmatch(vm.Console(), -1) {
		if m[2] == "interface vanished" {
			dropped[m[1]] = true
		}
	}
	var lost []string
	known := map[string]bool{}
	for _, n := range confirmed {
		known[n] = true
		if !dropped[n] {
			lost = append(lost, n)
		}
	}
	if len(lost) > 0 {
		t.Errorf("round %d: %d of %d bridges confirmed before the cut are not in the DB on flash: %v", round, len(lost), len(confirmed), lost)
	}
	for _, n := range leakCheck {
		known[n] = true
	}
	var extra []string
	for n := range dropped {
		if !known[n] {
			extra = append(extra, n)
		}
	}
	if len(extra) > 2 {
		t.Errorf("round %d: %d records nobody was told of: %v (at most 2 creates were in flight)", round, len(extra), extra)
	}
	return len(confirmed) - len(lost), len(extra)
}

// cutAndCollect starts two shell loops of ifctl create (typed as
// background jobs), cuts the power at a random moment up to 3 s (scaled)
// after the storm's first new bridge, and returns the names ifmgrd
// reported created before the cut. (The lifecycle's cutDuringStorm
// starts its loops through uroute-probe spawn; on malta those loops made
// no bridge in 60 s, so this keeps the typed jobs that work.)
func cutAndCollect(t *testing.T, lc *lifecycle, round int, rng *rand.Rand) ([]string, time.Duration) {
	t.Helper()
	from := lc.vm.mark()
	for i := 0; i < 2; i++ {
		if err := lc.vm.Type("for i in $(seq 1 300); do ifctl create bridge > /dev/null; done & \n"); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := lc.vm.WaitLine(from, reCreated, lc.arch.Scale(30*time.Second)); err != nil {
		t.Fatalf("round %d: the storm did not start: %v", round, err)
	}
	delay := lc.arch.Scale(time.Duration(rng.Int64N(int64(3 * time.Second))))
	time.Sleep(delay)
	// Everything on the console up to the cut was printed before it.
	lines := lc.vm.linesRange(from, lc.vm.mark())
	lc.vm.PowerCut()
	var names []string
	for _, m := range reCreated.FindAllStringSubmatch(strings.Join(lines, "\n"), -1) {
		names = append(names, m[1])
	}
	return names, delay
}
