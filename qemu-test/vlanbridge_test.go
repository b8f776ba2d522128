package qemutest

import (
	"fmt"
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

// TestVLANBridge proves a VLAN-filtering bridge on the wire
// (profiles/qemu-vlan-bridge.toml), in one boot per architecture:
//
//	probe a (netns) ==hub 10== port-a  tagged 10, 20   \
//	probe b (netns) ==hub 11== port-b  tagged 10        |  bridge "lan",
//	probe c (netns) ==hub 12== port-c  PVID 10, untagged|  VLAN filtering,
//	probe d (netns) ==hub 13== port-d  PVID 20, untagged/   self: 10 -> vlanN
//
// Every bridged NIC shares a QEMU hub with a probe NIC that no profile rule
// matches; the test moves the four probe NICs into a network namespace of
// their own ("uroute-probe netns"), so they are the far ends of the ports'
// wires, out of the bridge and out of ifmgrd's sight. uroute-probe sends a
// frame in at one end and listens at every other one (and on the router's
// own VLAN 10 link and on the bridge itself): each round says where the
// frame must come out, with which tag, and where it must not come out.
//
// Then port-c (the only NIC in the PCIe root port rp1) is unplugged and
// plugged back through QMP: its membership must come back (proven on the
// wire again) with zero DB commits.
//
// It runs on the machines whose guest takes a QMP hot-plug (amd64, arm64):
// armv7's Debian kernel has no PCI hot-plug and malta has no PCIe (nor
// PCI slots for nine NICs).
func TestVLANBridge(t *testing.T) {
	ForEachArch(t, func(t *testing.T, a Arch) {
		if !a.Hotplug {
			t.Skipf("%s: the guest cannot take a QMP hot-plug (qemu.Machine.Hotplug); the wire proof runs on amd64 and arm64", a.Name)
		}
		start := time.Now()
		kernel := Requirements(t, a)
		vb := &vlanBridge{arch: a}
		initrd := BuildImage(t, a, Profile("qemu-vlan-bridge"))
		imageReady := time.Now()
		vb.boot(t, kernel, initrd)
		for _, st := range []struct {
			name string
			fn   func(t *testing.T)
		}{
			{"wire", vb.wire},
			{"replug", vb.replug},
		} {
			if !t.Run(st.name, func(t *testing.T) { vb.vm.Use(t); st.fn(t) }) {
				break
			}
		}
		t.Logf("%s: TestVLANBridge wall time %v: image %v, then boot, %d frame rounds and the replug %v",
			a.Name, time.Since(start).Round(100*time.Millisecond), imageReady.Sub(start).Round(100*time.Millisecond),
			vb.rounds, time.Since(imageReady).Round(100*time.Millisecond))
	})
}

// A port of the test's bridge: its bridged NIC and its probe NIC share
// hub. The MACs are the profile's.
type vbPort struct {
	key      string // a, b, c, d: the profile's port-a ... port-d
	hub      int
	mac      string // bridged NIC
	probeMAC string // the wire's far end
	members  string // its membership as ifctl list shows it (OpenWrt's notation)
}

var vbPorts = []vbPort{
	{"a", 10, "52:54:00:12:0a:01", "52:54:00:12:0a:02", "10:t,20:t"},
	{"b", 11, "52:54:00:12:0b:01", "52:54:00:12:0b:02", "10:t"},
	{"c", 12, "52:54:00:12:0c:01", "52:54:00:12:0c:02", "10:u*"},
	{"d", 13, "52:54:00:12:0d:01", "52:54:00:12:0d:02", "20:u*"},
}

// vbSelfMembers is the bridge's own membership: a tagged member of the
// router's VLAN 10.
const vbSelfMembers = "10:t"

const (
	vbNetns  = "probes"
	vbReplug = "c"      // the port in rp1
	vbQMPID  = "port-c" // its QMP device id (netdev port-c-net, as VM.UnplugNIC expects)
)

type vlanBridge struct {
	arch   Arch
	vm     *VM
	bridge string            // the bridge's name (ifctl list)
	self   string            // the router's VLAN 10 link on it
	ports  map[string]string // key -> bridged NIC's name in the router's namespace
	probes map[string]string // key -> probe NIC's name in vbNetns
	rounds int
}

func (vb *vlanBridge) port(key string) vbPort {
	for _, p := range vbPorts {
		if p.key == key {
			return p
		}
	}
	panic("no port " + key)
}

// boot starts the guest with the eight NICs (port-c's bridged NIC in rp1),
// waits for ifmgrd to make the bridge and its VLAN 10 link, moves the
// probe NICs into their namespace and waits for the four ports to be in
// the bridge.
func (vb *vlanBridge) boot(t *testing.T, kernel, initrd string) {
	t.Helper()
	a := vb.arch
	nics := []NIC{}
	var devs []qemu.Device
	for _, p := range vbPorts {
		if p.key == vbReplug {
			devs = append(devs, qemu.Raw{
				"-netdev", fmt.Sprintf("hubport,id=%s-net,hubid=%d", vbQMPID, p.hub),
				"-device", fmt.Sprintf("virtio-net-pci,id=%s,netdev=%s-net,bus=%s,mac=%s,romfile=", vbQMPID, vbQMPID, qemu.HotplugPort, p.mac),
			})
		} else {
			nics = append(nics, NIC{p.hub, p.mac})
		}
		nics = append(nics, NIC{p.hub, p.probeMAC})
	}
	vb.vm = Boot(t, Config{Arch: a, Kernel: kernel, Initrd: initrd, NICs: nics,
		Data: NewDataDisk(t, 64), QMP: filepath.Join(t.TempDir(), "qmp.sock"), Devices: devs})
	vm := vb.vm
	vm.Use(t)
	// Generous, as in TestLifecycle: a loaded 2-core host stretches boots.
	if _, err := vm.WaitShell(a.Scale(300 * time.Second)); err != nil {
		t.Fatal(err)
	}
	list := vb.waitList(t, "the bridge and its VLAN 10 link up", func(l []ifmgr.Info) bool {
		br, ok := find(l, "bridge/lan", "")
		if !ok || br.State != "up" {
			return false
		}
		self, ok := selfVLAN(l, br.Name, 10)
		return ok && self.State == "up"
	})
	br, _ := find(list, "bridge/lan", "")
	self, _ := selfVLAN(list, br.Name, 10)
	vb.bridge, vb.self = br.Name, self.Name
	t.Logf("ifctl list:\n%s", formatList(list))

	// The kernel's side of the profile: filtering on, default PVID 0
	// (a port joins no VLAN until ifmgr says which).
	for f, want := range map[string]string{"vlan_filtering": "1", "default_pvid": "0"} {
		out := vm.MustRun("cat /sys/class/net/"+vb.bridge+"/bridge/"+f, a.Scale(10*time.Second))
		if got := lastField(out); got != want {
			t.Errorf("%s's %s is %q, want %s", vb.bridge, f, got, want)
		}
	}

	probeMACs := []string{"uroute-probe", "netns", vbNetns}
	for _, p := range vbPorts {
		probeMACs = append(probeMACs, p.probeMAC)
	}
	out := vm.MustRun(qemu.ShellQuote(probeMACs), a.Scale(20*time.Second))
	vb.probes = map[string]string{}
	moved := regexp.MustCompile(`probe: netns ` + vbNetns + `: (\S+) (\S+)`)
	for _, m := range moved.FindAllStringSubmatch(out, -1) {
		for _, p := range vbPorts {
			if m[2] == p.probeMAC {
				vb.probes[p.key] = m[1]
			}
		}
	}
	if len(vb.probes) != len(vbPorts) {
		t.Fatalf("uroute-probe netns moved %v, want the four probe NICs:\n%s", vb.probes, out)
	}
	vb.waitPorts(t, nil)
	vb.waitMembership(t)
	t.Logf("%s: bridge %s, self VLAN 10 link %s, ports %v, probes (netns %s) %v; ready %v after QEMU started",
		a.Name, vb.bridge, vb.self, vb.ports, vbNetns, vb.probes, vm.Since().Round(100*time.Millisecond))
	if errs := vm.ErrorLines(); len(errs) > 0 {
		t.Errorf("a clean boot printed %d error lines:\n%s", len(errs), strings.Join(errs, "\n"))
	}
}

// waitMembership waits until ifctl list -j shows the profile's membership
// on the bridge's own side and on each port present (ifmgrd lists what
// it last read from the kernel), and fails the test if it does not.
func (vb *vlanBridge) waitMembership(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(vb.arch.Scale(60 * time.Second))
	for {
		var list []ifmgr.Info
		err := vb.vm.RunJSON("ifctl list -j", &list, vb.arch.Scale(10*time.Second))
		br, _ := find(list, "bridge/lan", "")
		got := map[string]string{}
		for _, p := range br.Ports {
			got[p.Port] = p.VLANs.String()
		}
		seen := fmt.Sprintf("filtering %v, self %s, ports %v", br.VLANFiltering, br.SelfVLANs, got)
		ok := err == nil && br.VLANFiltering && br.SelfVLANs.String() == vbSelfMembers
		for _, p := range vbPorts {
			ok = ok && got[vb.ports[p.key]] == p.members
		}
		if ok {
			t.Logf("membership (ifctl list -j): %s", seen)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ifctl list -j never showed the profile's membership (self %s; ports %v by name %v): %v; last: %s",
				vbSelfMembers, vbPorts, vb.ports, err, seen)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// selfVLAN is the VLAN link with vid on top of bridge.
func selfVLAN(list []ifmgr.Info, bridge string, vid uint16) (ifmgr.Info, bool) {
	for _, in := range list {
		if in.Kind == "vlan" && in.Parent == bridge && in.VID == vid {
			return in, true
		}
	}
	return ifmgr.Info{}, false
}

func lastField(s string) string {
	f := strings.Fields(s)
	if len(f) == 0 {
		return ""
	}
	return f[len(f)-1]
}

func (vb *vlanBridge) waitList(t *testing.T, what string, done func([]ifmgr.Info) bool) []ifmgr.Info {
	t.Helper()
	deadline := time.Now().Add(vb.arch.Scale(60 * time.Second))
	for {
		var list []ifmgr.Info
		err := vb.vm.RunJSON("ifctl list -j", &list, vb.arch.Scale(10*time.Second))
		if err == nil && done(list) {
			return list
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %s: %v; last ifctl list:\n%s", what, err, formatList(list))
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// links maps MAC to link name in the router's namespace. The bridge and
// its VLAN link are left out: the bridge takes a port's MAC (the lowest),
// and its VLAN link the bridge's.
func (vb *vlanBridge) links(t *testing.T) map[string]string {
	t.Helper()
	out := vb.vm.MustRun("uroute-probe links", vb.arch.Scale(10*time.Second))
	m := map[string]string{}
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && strings.Count(f[1], ":") == 5 && f[0] != vb.bridge && f[0] != vb.self {
			m[f[1]] = f[0]
		}
	}
	return m
}

// waitPorts waits until each port's bridged NIC is a port of the bridge,
// except those in absent, which must not be in the router's namespace at
// all, and records their names.
func (vb *vlanBridge) waitPorts(t *testing.T, absent map[string]bool) {
	t.Helper()
	deadline := time.Now().Add(vb.arch.Scale(60 * time.Second))
	for {
		byMAC := vb.links(t)
		brif := vb.vm.MustRun("ls /sys/class/net/"+vb.bridge+"/brif", vb.arch.Scale(10*time.Second))
		vb.ports = map[string]string{}
		ok := true
		for _, p := range vbPorts {
			name, present := byMAC[p.mac]
			if absent[p.key] {
				ok = ok && !present
				continue
			}
			vb.ports[p.key] = name
			ok = ok && present && hasWord(brif, name)
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("ports of %s: want all but %v; links by MAC %v, bridge ports: %s", vb.bridge, absent, byMAC, brif)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// A frame round: a frame sent at one place, and what each listener must
// see: "10" (tagged 10), "none" (untagged) or "" (nothing at all).
type vbRound struct {
	name string
	from string // a port key (sent by its probe), or "self" (the router's VLAN 10 link)
	vid  int    // the tag the probe puts on it; 0 untagged
	want map[string]string
}

// Listeners: the four probes, the router's VLAN 10 link ("self") and the
// bridge device itself ("bridge": what the bridge passes up to the router,
// tagged since the router is a tagged member of its VLANs).
var vbListeners = []string{"a", "b", "c", "d", "self", "bridge"}

// vbFrameRe is uroute-probe recv's report.
var vbFrameRe = regexp.MustCompile(`probe: received (\S+) on (\S+) vid=(\S+)`)

// round starts a listener everywhere, sends the frames, waits for those
// that must arrive, gives the others a grace period after the last frame
// and stops them, then checks every listener against want: a frame where
// want says nothing came is as much a failure as one missing. It returns
// what was wrong: frames missing (or with the wrong tag), and frames
// leaked where they must not come out.
func (vb *vlanBridge) round(t *testing.T, r vbRound) (missing, leaked []string) {
	t.Helper()
	vm, a := vb.vm, vb.arch
	vb.rounds++
	marker := fmt.Sprintf("vb%d-%d", vb.rounds, time.Now().UnixNano()%1e9)
	files := map[string]string{}
	pids := map[string]int{}
	for _, l := range vbListeners {
		f := fmt.Sprintf("/tmp/vb%d-%s", vb.rounds, l)
		files[l] = f
		argv := []string{"uroute-probe", "recv"}
		switch l {
		case "self":
			argv = append(argv, vb.self)
		case "bridge":
			argv = append(argv, vb.bridge)
		default:
			argv = append(argv, "-netns", vbNetns, vb.probes[l])
		}
		// A bound for a lost round, not the wait: listeners that must see
		// nothing are stopped below once the frames are through.
		argv = append(argv, marker, strconv.Itoa(int(a.Scale(120*time.Second).Seconds())))
		pids[l] = vm.Spawn(f, argv...)
	}
	vb.waitFiles(t, files, "probe: listening on", a.Scale(30*time.Second))

	send := []string{"uroute-probe", "send"}
	if r.from == "self" {
		send = append(send, vb.self)
	} else {
		send = append(send, "-netns", vbNetns)
		if r.vid != 0 {
			send = append(send, "-vid", strconv.Itoa(r.vid))
		}
		send = append(send, vb.probes[r.from])
	}
	sendFile := fmt.Sprintf("/tmp/vb%d-send", vb.rounds)
	// In the background, as TestLifecycle sends: a foreground send once
	// left arm64's shell without its prompt.
	vm.Spawn(sendFile, append(send, marker)...)
	vb.waitFiles(t, map[string]string{"send": sendFile}, "probe: sent 5 frames", a.Scale(30*time.Second))
	expect := map[string]string{}
	for l, w := range r.want {
		if w != "" {
			expect[l] = files[l]
		}
	}
	// Bounded: a frame that has not come by then counts as missing.
	vb.pollFiles(t, expect, "probe: (received|timeout)", a.Scale(20*time.Second))
	// The bridge forwards in the kernel's receive path: a frame that was
	// going to come out anywhere has done so by the time the expected ones
	// are in. The grace is for slow TCG scheduling only.
	time.Sleep(a.Scale(2 * time.Second))
	var kill []string
	for _, pid := range pids {
		kill = append(kill, strconv.Itoa(pid))
	}
	sort.Strings(kill)
	// Every listener still running (those that must hear nothing, and any
	// that missed its frame) is stopped; one that got its frame has exited
	// and makes kill complain, so its status says nothing: the outputs
	// below decide.
	_, _, _ = vm.Run("kill "+strings.Join(kill, " "), a.Scale(10*time.Second))
	got := vb.readFiles(t, files)
	var report []string
	for _, l := range vbListeners {
		m := vbFrameRe.FindStringSubmatch(got[l])
		seen := ""
		if m != nil && m[1] == marker {
			seen = strings.Fields(m[3])[0] // "10 (inline)" is still tag 10
		}
		show := seen
		if show == "" {
			show = "-"
		}
		report = append(report, l+":"+show)
		if !strings.Contains(got[l], "probe: listening on") {
			missing = append(missing, fmt.Sprintf("%s: the %s listener never listened:\n%s", r.name, l, got[l]))
			continue
		}
		switch want := r.want[l]; {
		case want == "" && seen != "":
			leaked = append(leaked, fmt.Sprintf("%s: the frame came out at %s (vid=%s); it must not", r.name, l, seen))
		case want != "" && seen != want:
			missing = append(missing, fmt.Sprintf("%s: at %s want the frame with vid=%s, got %q:\n%s", r.name, l, want, seen, got[l]))
		}
	}
	t.Logf("%s (from %s, vid %d): %s", r.name, r.from, r.vid, strings.Join(report, " "))
	return missing, leaked
}

// mustRound is a round whose every finding fails the test.
func (vb *vlanBridge) mustRound(t *testing.T, r vbRound) {
	t.Helper()
	missing, leaked := vb.round(t, r)
	for _, p := range append(missing, leaked...) {
		t.Error(p)
	}
}

// waitFiles polls files (one command for all) until each matches pattern,
// and fails the test if that takes longer than timeout.
func (vb *vlanBridge) waitFiles(t *testing.T, files map[string]string, pattern string, timeout time.Duration) map[string]string {
	t.Helper()
	got, ok := vb.pollFiles(t, files, pattern, timeout)
	if !ok {
		t.Fatalf("no %q within %v: %q", pattern, timeout, got)
	}
	return got
}

// pollFiles is waitFiles that reports a timeout instead of failing.
func (vb *vlanBridge) pollFiles(t *testing.T, files map[string]string, pattern string, timeout time.Duration) (map[string]string, bool) {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(timeout)
	for {
		got := vb.readFiles(t, files)
		done := true
		for k := range files {
			done = done && re.MatchString(got[k])
		}
		if done || len(files) == 0 {
			return got, true
		}
		if time.Now().After(deadline) {
			return got, false
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// readFiles reads several guest files with one console command.
func (vb *vlanBridge) readFiles(t *testing.T, files map[string]string) map[string]string {
	t.Helper()
	if len(files) == 0 {
		return map[string]string{}
	}
	keys := make([]string, 0, len(files))
	for k := range files {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var cmd []string
	for _, k := range keys {
		cmd = append(cmd, "echo =="+k+"==", "cat "+files[k])
	}
	out, _, err := vb.vm.Run(strings.Join(cmd, "; "), vb.arch.Scale(20*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	cur := ""
	for _, l := range strings.Split(out, "\n") {
		if m := regexp.MustCompile(`^==(\S+)==$`).FindStringSubmatch(strings.TrimSpace(l)); m != nil {
			cur = m[1]
			continue
		}
		if cur != "" {
			got[cur] += l + "\n"
		}
	}
	return got
}

// The rounds. C's two (untagged in at C, tagged 10 out at C) run again
// after the replug.
var (
	vbTagged10IntoA = vbRound{name: "tagged 10 into port-a", from: "a", vid: 10,
		want: map[string]string{"b": "10", "c": "none", "self": "none", "bridge": "10"}}
	vbUntaggedIntoC = vbRound{name: "untagged into port-c", from: "c",
		want: map[string]string{"a": "10", "b": "10", "self": "none", "bridge": "10"}}
	vbTagged20IntoA = vbRound{name: "tagged 20 into port-a", from: "a", vid: 20,
		want: map[string]string{"d": "none"}}
	vbFromRouter = vbRound{name: "sent on the router's VLAN 10 link", from: "self",
		want: map[string]string{"a": "10", "b": "10", "c": "none"}}
)

// wire: the bridge forwards by VLAN membership. port-d is proven alive
// (VLAN 20 reaches it) so that its silence in VLAN 10 means something;
// VLAN 20 never reaches the router, B or C.
func (vb *vlanBridge) wire(t *testing.T) {
	for _, r := range []vbRound{vbTagged10IntoA, vbUntaggedIntoC, vbTagged20IntoA, vbFromRouter} {
		vb.mustRound(t, r)
	}
}

// replug: port-c leaves through QMP device_del and comes back with
// device_add (same MAC, same root port). Its membership must be back, as
// the wire shows, and ifmgrd must not have written its DB for it.
func (vb *vlanBridge) replug(t *testing.T) {
	vm, a := vb.vm, vb.arch
	before := vb.status(t)
	logFrom := vm.mark()
	p := vb.port(vbReplug)
	vm.UnplugNIC(vbQMPID, a.Scale(60*time.Second))
	vb.waitPorts(t, map[string]bool{vbReplug: true})
	vm.HotplugNIC(vbQMPID, p.mac, p.hub)
	vb.waitPorts(t, nil)
	t.Logf("port-c is %s again", vb.ports[vbReplug])
	vb.waitMembership(t)
	// ifmgrd puts the port in the bridge and then gives it its
	// membership, a moment later: while the frames are missing, the first
	// round is repeated, for a bounded time (the membership comes back,
	// or the test fails with the last round's findings). A frame that
	// leaks where it must not fails at once: a port that has joined no
	// VLAN yet passes nothing (default PVID 0).
	deadline := time.Now().Add(a.Scale(60 * time.Second))
	for try := 1; ; try++ {
		r := vbUntaggedIntoC
		r.name = fmt.Sprintf("untagged into port-c after the replug (try %d)", try)
		missing, leaked := vb.round(t, r)
		if len(leaked) > 0 || len(missing) > 0 && time.Now().After(deadline) {
			for _, p := range append(missing, leaked...) {
				t.Error(p)
			}
			return
		}
		if len(missing) == 0 {
			break
		}
	}
	r := vbTagged10IntoA
	r.name += " after the replug"
	vb.mustRound(t, r)
	after := vb.status(t)
	t.Logf("DB commits: %d before the unplug, %d after the replug", before.Commits, after.Commits)
	if after.Commits != before.Commits {
		t.Errorf("unplug + replug of a known port wrote the DB %d times, want 0", after.Commits-before.Commits)
	}
	if n := countLines(vm.linesRange(logFrom, vm.mark()), "level=ERROR"); n > 0 {
		t.Errorf("%d ifmgrd errors during the replug", n)
	}
}

func (vb *vlanBridge) status(t *testing.T) ifmgr.Status {
	t.Helper()
	var st ifmgr.Status
	if err := vb.vm.RunJSON("ifctl status -j", &st, vb.arch.Scale(10*time.Second)); err != nil {
		t.Fatal(err)
	}
	return st
}
