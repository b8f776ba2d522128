package qemutest

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/qemu-test/qemu"
)

// The MACs of the harness's NICs: eth0 and eth1 share hub 0, the
// hot-plugged NIC has hub 2 to itself.
const (
	mac0   = "52:54:00:12:34:01"
	mac1   = "52:54:00:12:34:02"
	macHot = "52:54:00:12:34:03"
)

// TestLifecycle is the router's life on each architecture, one boot after
// another on one data disk, with qemu-test/profiles/qemu-vlan-hub.toml:
//
//   - vlan: tagged frames on the wire between the two NICs' VLANs, through
//     a bridge;
//   - hotplug: a NIC added, removed and added again with the same MAC
//     (on armv7 and malta, whose guests cannot take a QEMU hot-plug, the
//     kernel removes the NIC and finds it again);
//   - reboot: a clean reboot keeps every unit, the DB and the profile;
//   - powercut: QMP quit in the middle of an allocation storm, 20 rounds
//     on amd64 and 3 on the others.
//
// Subtests depend on the ones before them and stop the arch at the first
// failure.
func TestLifecycle(t *testing.T) {
	ForEachArch(t, func(t *testing.T, a Arch) {
		kernel := Requirements(t, a)
		lc := &lifecycle{top: t, arch: a, kernel: kernel,
			initrd: BuildImage(t, a, Profile("qemu-vlan-hub")),
			data:   NewDataDisk(t, 64),
			qmp:    filepath.Join(t.TempDir(), "qmp.sock")}
		for _, st := range []struct {
			name string
			fn   func(t *testing.T)
		}{
			{"vlan", lc.vlan},
			{"hotplug", lc.hotplug},
			{"reboot", lc.reboot},
			{"powercut", lc.powercut},
		} {
			if !t.Run(st.name, st.fn) {
				break
			}
		}
	})
}

// dbRebuilt is what ifmgrd logs (firmware/daemon) when persist found the
// DB file damaged, moved it aside and rebuilt it from the kernel.
const dbRebuilt = "allocation DB was unreadable"

type lifecycle struct {
	top                  *testing.T // the arch's test, which owns the VMs
	arch                 Arch
	kernel, initrd, data string
	qmp                  string
	nics                 []NIC  // nil: eth0 and eth1 on one hub (and eth2, see hotplug)
	append               string // kernel parameters
	mem                  int    // MB; 0 = the arch's
	devices              []qemu.Device
	db                   string // ifmgrd's DB path in status; "" = /data/uroute/ifmgr.db
	vm                   *VM    // the running guest, carried from one subtest to the next
	// units is the name of every profile interface by identity, as the
	// first boot allocated them.
	units map[string]string
}

// boot starts the guest on the data disk with eth0 and eth1 on one hub,
// waits for the shell and for ifmgrd to converge on the profile, and
// returns ifctl list.
func (lc *lifecycle) boot(t *testing.T) []ifmgr.Info {
	t.Helper()
	if lc.vm != nil {
		lc.vm.Close()
	}
	nics := lc.nics
	if nics == nil {
		nics = []NIC{{0, mac0}, {0, mac1}}
		if !lc.arch.Hotplug {
			nics = append(nics, NIC{2, macHot}) // see hotplug
		}
	}
	lc.vm = Boot(lc.top, Config{Arch: lc.arch, Kernel: lc.kernel, Initrd: lc.initrd,
		NICs: nics, Data: lc.data, QMP: lc.qmp, Append: lc.append, Mem: lc.mem, Devices: lc.devices})
	lc.vm.Use(t)
	// Generous: on a loaded 2-core host, boots that take 5 s alone were
	// seen taking 90 s (amd64) and 140 s (malta); see scripts/boot-times.sh.
	ready, err := lc.vm.WaitShell(lc.arch.Scale(300 * time.Second))
	if err != nil {
		t.Fatal(err)
	}
	list := lc.waitList(t, "the profile's interfaces up", func(l []ifmgr.Info) bool {
		return isUp(l, "bridge/guest", "") && isUp(l, "bridge/lan", "") &&
			isUp(l, "port/uplink", mac0+",vid=10") &&
			isUp(l, "port/lan", mac1+",vid=10") && isUp(l, "port/lan", mac1+",vid=20")
	})
	t.Logf("%s: shell ready %v, profile converged %v after QEMU started", lc.arch.Name,
		ready.Round(100*time.Millisecond), lc.vm.Since().Round(100*time.Millisecond))
	if !strings.Contains(lc.vm.Console(), "uinit: data: ok") {
		t.Errorf("the data disk was not mounted (no \"uinit: data: ok\")")
	}
	return list
}

// checkCleanConsole: a clean boot (a fresh disk, or after a clean
// shutdown) prints no line that looks like an error (VM.ErrorLines),
// u-root's init loading modules before uinit included.
func (lc *lifecycle) checkCleanConsole(t *testing.T) {
	t.Helper()
	if errs := lc.vm.ErrorLines(); len(errs) > 0 {
		t.Errorf("a clean boot printed %d error lines:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

// waitList polls ifctl list until done accepts it.
func (lc *lifecycle) waitList(t *testing.T, what string, done func([]ifmgr.Info) bool) []ifmgr.Info {
	t.Helper()
	deadline := time.Now().Add(lc.arch.Scale(30 * time.Second))
	for {
		var list []ifmgr.Info
		err := lc.vm.RunJSON("ifctl list -j", &list, lc.arch.Scale(10*time.Second))
		if err == nil && done(list) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v; last ifctl list:\n%s", what, err, formatList(list))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func (lc *lifecycle) status(t *testing.T) ifmgr.Status {
	t.Helper()
	var st ifmgr.Status
	if err := lc.vm.RunJSON("ifctl status -j", &st, lc.arch.Scale(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return st
}

// find is the entry whose identity is "rule=RULE" plus ",mac=REST" (REST
// holding the mac and vid) or exactly "rule=RULE" when rest is "".
func find(list []ifmgr.Info, rule, rest string) (ifmgr.Info, bool) {
	id := "rule=" + rule
	if rest != "" {
		id += ",mac=" + rest
	}
	for _, in := range list {
		if in.Identity == id {
			return in, true
		}
	}
	return ifmgr.Info{}, false
}

func isUp(list []ifmgr.Info, rule, rest string) bool {
	in, ok := find(list, rule, rest)
	return ok && in.State == "up"
}

func formatList(list []ifmgr.Info) string {
	var b strings.Builder
	for _, in := range list {
		fmt.Fprintf(&b, "  %-8s %-6s unit %-3d %-8s %s\n", in.Name, in.Kind, in.Unit, in.State, in.Identity)
	}
	return b.String()
}

// byIdentity maps each entry's identity to its name.
func byIdentity(list []ifmgr.Info) map[string]string {
	m := map[string]string{}
	for _, in := range list {
		m[in.Identity] = in.Name
	}
	return m
}

// vlan: a frame sent untagged on the guest bridge leaves through eth0.10
// tagged, crosses the hub, and arrives untagged on eth1.10; eth1 itself
// sees tag 10.
func (lc *lifecycle) vlan(t *testing.T) {
	list := lc.boot(t)
	lc.checkCleanConsole(t)
	lc.units = byIdentity(list)
	t.Logf("ifctl list:\n%s", formatList(list))
	guest, _ := find(list, "bridge/guest", "")
	rx, _ := find(list, "port/lan", mac1+",vid=10")
	if rx.Parent != "eth1" {
		t.Fatalf("eth1's VLAN 10 is %s on %q, want parent eth1", rx.Name, rx.Parent)
	}
	vm := lc.vm
	marker := fmt.Sprintf("m%d", time.Now().UnixNano()%1e9)
	files := map[string]string{"/tmp/r-vlan": rx.Name, "/tmp/r-eth1": "eth1"}
	for f, dev := range files {
		vm.Spawn(f, "uroute-probe", "recv", dev, marker, "30")
	}
	waitProbe(t, vm, files, "probe: listening on", lc.arch.Scale(15*time.Second))
	// In the background like the receivers: on arm64 a foreground send
	// on the bridge once left the shell without its prompt (the frames
	// did go out).
	vm.Spawn("/tmp/s", "uroute-probe", "send", guest.Name, marker)
	got := waitProbe(t, vm, files, "probe: (received|timeout)", lc.arch.Scale(30*time.Second))
	sent := waitProbe(t, vm, map[string]string{"/tmp/s": guest.Name}, "probe: sent 5 frames", lc.arch.Scale(15*time.Second))
	t.Logf("send: %s", strings.TrimSpace(sent["/tmp/s"]))
	want := map[string]string{
		"/tmp/r-vlan": "probe: received " + marker + " on " + rx.Name + " vid=none",
		"/tmp/r-eth1": "probe: received " + marker + " on eth1 vid=10",
	}
	for f, w := range want {
		t.Logf("%s: %s", f, strings.ReplaceAll(strings.TrimSpace(got[f]), "\n", " | "))
		if !strings.Contains(got[f], w) {
			t.Errorf("%s: want line %q, got:\n%s", f, w, got[f])
		}
	}
}

// waitProbe polls the probes' output files until each has a line matching
// pattern, and returns their contents.
func waitProbe(t *testing.T, vm *VM, files map[string]string, pattern string, timeout time.Duration) map[string]string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(timeout)
	got := map[string]string{}
	for {
		done := true
		for f := range files {
			out, _, err := vm.Run("cat "+f, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got[f] = out
			if !re.MatchString(out) {
				done = false
			}
		}
		if done {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v: %q", pattern, timeout, got)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// hotplug: a NIC plugged in gets its VLANs and joins the lan bridge;
// unplugged, its VLANs go (their units stay reserved) with no error storm;
// plugged in again with the same MAC it gets the same units and ifmgrd
// writes nothing to the DB.
//
// Where the guest cannot take a NIC hot-plugged through QEMU (armv7's
// kernel has no PCI hot-plug, malta's bus none), the third NIC is there
// from boot and the kernel removes it and finds it again instead
// (sysfs remove and bus rescan): to ifmgrd the same link events.
func (lc *lifecycle) hotplug(t *testing.T) {
	vm := lc.vm
	vm.Use(t)
	before := lc.status(t)
	logFrom := vm.mark()
	hotUp := func(l []ifmgr.Info) bool {
		return isUp(l, "port/lan", macHot+",vid=10") && isUp(l, "port/lan", macHot+",vid=20")
	}
	plug := func() {
		if lc.arch.Hotplug {
			vm.HotplugNIC("nic2", macHot, 2)
		} else {
			vm.MustRun("echo 1 > /sys/bus/pci/rescan", lc.arch.Scale(20*time.Second))
		}
	}
	if lc.arch.Hotplug {
		plug()
	} else {
		t.Logf("%s: no PCI hot-plug in the guest; the NIC is removed and rescanned through sysfs", lc.arch.Name)
	}
	list := lc.waitList(t, "the hot-plugged NIC's VLANs", hotUp)
	v10, _ := find(list, "port/lan", macHot+",vid=10")
	v20, _ := find(list, "port/lan", macHot+",vid=20")
	dev := v10.Parent
	lan, _ := find(list, "bridge/lan", "")
	t.Logf("plugged: %s: %s (VLAN 10), %s (VLAN 20)", dev, v10.Name, v20.Name)
	lc.waitBridgePorts(t, lan.Name, dev, true)
	first := lc.status(t)

	if lc.arch.Hotplug {
		vm.UnplugNIC("nic2", lc.arch.Scale(30*time.Second))
	} else {
		// device is the virtio device; its parent is the PCI function.
		vm.MustRun("echo 1 > /sys/class/net/"+dev+"/device/../remove", lc.arch.Scale(20*time.Second))
	}
	lc.waitList(t, "the unplugged NIC's VLANs gone", func(l []ifmgr.Info) bool {
		a, ok1 := find(l, "port/lan", macHot+",vid=10")
		b, ok2 := find(l, "port/lan", macHot+",vid=20")
		return ok1 && ok2 && a.State == "absent" && b.State == "absent"
	})
	lc.waitBridgePorts(t, lan.Name, dev, false)
	if out := vm.MustRun("ls /sys/class/net", 10*time.Second); hasWord(out, v10.Name) || hasWord(out, dev) {
		t.Errorf("after unplug the kernel still has %s or %s:\n%s", v10.Name, dev, out)
	}

	plug()
	list = lc.waitList(t, "the re-plugged NIC's VLANs", hotUp)
	again10, _ := find(list, "port/lan", macHot+",vid=10")
	again20, _ := find(list, "port/lan", macHot+",vid=20")
	if again10.Name != v10.Name || again20.Name != v20.Name {
		t.Errorf("re-plugged with the same MAC: %s, %s; first time %s, %s", again10.Name, again20.Name, v10.Name, v20.Name)
	}
	lc.waitBridgePorts(t, lan.Name, again10.Parent, true)
	after := lc.status(t)
	t.Logf("DB commits: %d before the first plug, %d after it, %d after unplug and replug",
		before.Commits, first.Commits, after.Commits)
	if after.Commits != first.Commits {
		t.Errorf("unplug + replug of known hardware wrote the DB %d times, want 0", after.Commits-first.Commits)
	}
	errs := countLines(vm.linesRange(logFrom, vm.mark()), "level=ERROR")
	if errs > 0 {
		t.Errorf("%d ifmgrd errors during hot-plug", errs)
	}
	lc.units = byIdentity(list)
}

// waitBridgePorts waits until dev is (or is not) a port of bridge.
func (lc *lifecycle) waitBridgePorts(t *testing.T, bridge, dev string, member bool) {
	t.Helper()
	deadline := time.Now().Add(lc.arch.Scale(20 * time.Second))
	for {
		out, _, err := lc.vm.Run("ls /sys/class/net/"+bridge+"/brif", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if hasWord(out, dev) == member {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s in bridge %s: want %v; ports: %s", dev, bridge, member, out)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// reboot: a clean reboot ("uroute-uinit shutdown -r"; with -no-reboot
// QEMU exits) and a boot on the same disk give every profile interface
// its old unit, including the unplugged NIC's reserved ones, with no DB
// write.
func (lc *lifecycle) reboot(t *testing.T) {
	lc.vm.Use(t)
	lc.shutdown(t)
	list := lc.boot(t)
	lc.checkCleanConsole(t)
	got := byIdentity(list)
	for id, name := range lc.units {
		if got[id] != name {
			t.Errorf("%s: %s after the reboot, %s before", id, got[id], name)
		}
	}
	if len(got) != len(lc.units) {
		t.Errorf("%d interfaces after the reboot, %d before:\n%s", len(got), len(lc.units), formatList(list))
	}
	st := lc.status(t)
	if want := cmp.Or(lc.db, "/data/uroute/ifmgr.db"); st.DB != want {
		t.Errorf("ifmgrd runs from %q, not the data disk", st.DB)
	}
	if st.Commits != 0 {
		t.Errorf("booting known hardware wrote the DB %d times, want 0", st.Commits)
	}
	if !strings.Contains(st.Profile, "qemu-vlan-hub") {
		t.Errorf("profile in force: %q", st.Profile)
	}
}

func (lc *lifecycle) shutdown(t *testing.T) {
	t.Helper()
	if err := lc.vm.Type("uroute-uinit shutdown -r\n"); err != nil {
		t.Fatal(err)
	}
	if err := lc.vm.WaitExit(lc.arch.Scale(30 * time.Second)); err != nil {
		t.Fatalf("clean reboot: %v", err)
	}
	checkCleanReboot(t, lc.vm.Console())
}

// checkCleanReboot checks that a console shows the clean path of
// `uroute-uinit shutdown -r`: the supervisor stopped ifmgrd, then
// reboot(2). uinit's own "rebooting" line can die in the UART with the
// machine (seen on malta even after tcdrain), so the kernel's line for the
// same reboot(2) counts too.
func checkCleanReboot(t *testing.T, con string) {
	t.Helper()
	if !strings.Contains(con, "uinit: ifmgrd: stopped") {
		t.Errorf("no \"uinit: ifmgrd: stopped\" on the console: ifmgrd was not stopped before the reboot")
	}
	if !strings.Contains(con, "uinit: shutdown: rebooting") && !strings.Contains(con, "reboot: Restarting system") {
		t.Errorf("neither \"uinit: shutdown: rebooting\" nor the kernel's \"reboot: Restarting system\" on the console")
	}
}

// cutDuringStorm starts two shell loops of ifctl create (concurrent
// requests, each a DB transaction, for longer than the cut waits) and cuts
// the power at a random moment up to maxDelay (scaled) after the storm's
// first new bridge. It returns that moment and how many bridges ifmgrd
// had reported created by then: each "created" line follows its record's
// commit, so those allocations were confirmed.
func (lc *lifecycle) cutDuringStorm(t *testing.T, round int, rng *rand.Rand, maxDelay time.Duration) (time.Duration, int) {
	t.Helper()
	from := lc.vm.mark()
	for i := 0; i < 2; i++ {
		lc.vm.Spawn(fmt.Sprintf("/tmp/storm%d", i), "sh", "-c", "for i in $(seq 1 300); do ifctl create bridge > /dev/null; done")
	}
	if _, _, err := lc.vm.WaitLine(from, regexp.MustCompile(`msg=created name=bridge`), lc.arch.Scale(30*time.Second)); err != nil {
		out, _, _ := lc.vm.Run("cat /tmp/storm0 /tmp/storm1; ps", lc.arch.Scale(10*time.Second))
		t.Fatalf("round %d: the storm did not start: %v; the loops' output and ps:\n%s", round, err, out)
	}
	delay := lc.arch.Scale(time.Duration(rng.Int64N(int64(maxDelay))))
	time.Sleep(delay)
	made := countLines(lc.vm.linesRange(from, lc.vm.mark()), "msg=created name=bridge")
	lc.vm.PowerCut()
	return delay, made
}

// powercut: rounds of (allocation storm, QMP quit at a random moment,
// boot). After each boot: the DB opened or was recovered, no name twice,
// no unit leaked: every record left is the profile's (ifctl's records
// died with their links) and a new bridge gets the lowest free unit.
func (lc *lifecycle) powercut(t *testing.T) {
	rounds := 3
	if lc.arch.Name == "amd64" {
		rounds = 20
	}
	if n, err := strconv.Atoi(os.Getenv("UROUTE_POWERCUT_ROUNDS")); err == nil {
		rounds = n
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	lc.vm.Use(t)
	recovered := 0
	for r := 1; r <= rounds; r++ {
		delay, made := lc.cutDuringStorm(t, r, rng, 3*time.Second)
		list := lc.boot(t)
		if strings.Contains(lc.vm.Console(), dbRebuilt) {
			recovered++
		}
		lc.checkNoLeak(t, r, list)
		t.Logf("round %d: cut %v into the storm (%d bridges created this boot); boot %v, ok",
			r, delay.Round(10*time.Millisecond), made, lc.vm.Since().Round(100*time.Millisecond))
		if t.Failed() {
			return
		}
	}
	t.Logf("%d rounds; %d boots found the DB damaged and rebuilt it", rounds, recovered)
}

func (lc *lifecycle) checkNoLeak(t *testing.T, round int, list []ifmgr.Info) {
	t.Helper()
	names := map[string]bool{}
	units := map[uint32]bool{}
	for _, in := range list {
		if names[in.Name] {
			t.Errorf("round %d: %s listed twice:\n%s", round, in.Name, formatList(list))
		}
		names[in.Name] = true
		if !strings.HasPrefix(in.Identity, "rule=") {
			t.Errorf("round %d: %s (%s) survived a power cut, but its link did not", round, in.Name, in.Identity)
		}
		if in.Kind == "bridge" {
			units[in.Unit] = true
		}
	}
	st := lc.status(t)
	if want := cmp.Or(lc.db, "/data/uroute/ifmgr.db"); st.DB != want {
		t.Errorf("round %d: ifmgrd runs from %q, not the data disk", round, st.DB)
	}
	for _, c := range st.Cloners {
		n := 0
		for _, in := range list {
			if in.Cloner == c.Name {
				n++
			}
		}
		if c.Allocated != n {
			t.Errorf("round %d: cloner %s has %d units allocated but %d interfaces listed", round, c.Name, c.Allocated, n)
		}
	}
	var lowest uint32
	for units[lowest] {
		lowest++
	}
	out := strings.TrimSpace(lc.vm.MustRun("ifctl create bridge", lc.arch.Scale(10*time.Second)))
	if want := fmt.Sprintf("bridge%d", lowest); !hasWord(out, want) {
		t.Errorf("round %d: a new bridge got %q, want %s (the lowest free unit)", round, out, want)
	}
	for id, name := range lc.units {
		if got := byIdentity(list)[id]; got != name {
			t.Errorf("round %d: %s is %s, was %s", round, id, got, name)
		}
	}
}

func countLines(lines []string, substr string) int {
	n := 0
	for _, l := range lines {
		if strings.Contains(l, substr) {
			n++
		}
	}
	return n
}

// hasWord reports whether w occurs in s as a word.
func hasWord(s, w string) bool {
	return regexp.MustCompile(`(^|\W)` + regexp.QuoteMeta(w) + `(\W|$)`).MatchString(s)
}
