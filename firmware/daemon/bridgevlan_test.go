package daemon

import (
	"encoding/json"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/kernel"
	"golang.org/x/sys/unix"
)

// needBridgeVLANFiltering skips t on a kernel without bridge VLAN filtering
// (the CI host's): such a test runs in the QEMU guests (qemu-test
// TestGuestKernelTests), whose report fails on any skip. The probe is a
// throw-away filtering bridge.
func needBridgeVLANFiltering(t *testing.T) {
	t.Helper()
	c, err := kernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br, err := c.CreateBridgeWith("tbrvlan", 0, kernel.BridgeOptions{VLANFiltering: true})
	switch {
	case err == nil:
		_ = c.Delete(br.Index)
	case errors.Is(err, unix.EOPNOTSUPP):
		t.Skipf("no bridge VLAN filtering in this kernel (%v): runs inside the QEMU guests (qemu-test/README.md, the kernel tests inside the guests)", err)
	default:
		t.Fatalf("probe for bridge VLAN filtering: %v", err)
	}
}

const bridgeVLANProfile = `
board = "bridge-vlans"
[[bridge]]
name = "lan"
vlan_filtering = true
self_vlans = [10]

[[port]]
name = "trunk"
match.name = "pvt*"
bridge = "lan"
bridge_vlan = { pvid = 1, tagged = [10, 20] }

[[port]]
name = "access"
match.name = "pva*"
bridge = "lan"
bridge_vlan.pvid = 10
`

// bridgeVLANs reads every link's membership from the kernel, by name.
func bridgeVLANs(t *testing.T) map[string][]kernel.BridgeVLAN {
	t.Helper()
	c, err := kernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dump, err := c.BridgeVLANs()
	if err != nil {
		t.Fatal(err)
	}
	links, err := c.Links()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]kernel.BridgeVLAN{}
	for _, l := range links {
		if vs, ok := dump[l.Index]; ok {
			out[l.Name] = vs
		}
	}
	return out
}

// TestBridgeVLANsFromProfile drives the real ifmgrd and ifctl against the
// real kernel: a filtering bridge made from the profile with default PVID
// 0, each port's entries and the bridge's own read back from the kernel, the
// router's VLAN 10 link on the bridge; ifctl list -j and status show it;
// drift (an entry deleted, one added, filtering turned off by another
// process) is repaired; a replug gets its entries back with no DB commit;
// a reload's dry run prints the one port's membership change.
func TestBridgeVLANsFromProfile(t *testing.T) {
	e := newEnv(t)
	needBridgeVLANFiltering(t)
	e.writeProfile(bridgeVLANProfile)
	e.start()

	trunkMAC := net.HardwareAddr{0x02, 0, 0, 0, 0xbc, 0x01}
	addVeth(t, "pvt0", trunkMAC, "peer-pvt0")
	addVeth(t, "pva0", net.HardwareAddr{0x02, 0, 0, 0, 0xbc, 0x02}, "peer-pva0")
	trunk := []kernel.BridgeVLAN{{VID: 1, PVID: true, Untagged: true}, {VID: 10}, {VID: 20}}
	access := []kernel.BridgeVLAN{{VID: 10, PVID: true, Untagged: true}}
	self := []kernel.BridgeVLAN{{VID: 10}}
	var brName string
	converged := func() bool {
		for _, l := range kernelOwned(t, e.group) {
			if l.Kind == kernel.KindBridge {
				brName = l.Name
			}
		}
		m := bridgeVLANs(t)
		return brName != "" && slices.Equal(m["pvt0"], trunk) && slices.Equal(m["pva0"], access) && slices.Equal(m[brName], self)
	}
	waitFor(t, converged)
	owned := kernelOwned(t, e.group)
	br := owned[brName]
	if !br.VLANFiltering || br.DefaultPVID != 0 {
		t.Errorf("%s: filtering %v, default pvid %d; want on, 0", brName, br.VLANFiltering, br.DefaultPVID)
	}
	var selfLink kernel.Link
	for _, l := range owned {
		if l.Kind == kernel.KindVLAN {
			selfLink = l
		}
	}
	if selfLink.IfLink != br.Index || selfLink.VLANID != 10 {
		t.Errorf("the router's VLAN 10 link: %+v, want VLAN 10 on %s (%d)", selfLink, brName, br.Index)
	}

	// ifctl list -j: each port's membership; ifctl status: the counts.
	out, errOut, code := ifctl(t, e.socket, "list", "-j")
	var list []ifmgr.Info
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil {
		t.Fatalf("list -j: %q %q %d", out, errOut, code)
	}
	ports := map[string]string{}
	for _, in := range list {
		if in.Name == brName {
			for _, p := range in.Ports {
				ports[p.Port] = p.VLANs.String()
			}
		}
	}
	if ports["pvt0"] != "1:u*,10:t,20:t" || ports["pva0"] != "10:u*" {
		t.Errorf("list -j ports: %v", ports)
	}
	if out, _, _ := ifctl(t, e.socket, "list"); !strings.Contains(out, "pvt0") || !strings.Contains(out, "1:u*,10:t,20:t") {
		t.Errorf("list: no membership of pvt0:\n%s", out)
	}
	if out, _, _ := ifctl(t, e.socket, "status"); !strings.Contains(out, "bridge VLANs: 1 filtering bridges, 1 own entries; 2 ports, 4 entries; 0 changes pending") {
		t.Errorf("status does not count the membership:\n%s", out)
	}
	commits := e.status().Commits

	// Drift, by another process: an entry deleted, one added, filtering off.
	c, err := kernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pvt0 := kernelLink(t, "pvt0")
	if err := c.DelBridgeVLAN(pvt0.Index, false, 20); err != nil {
		t.Fatal(err)
	}
	if err := c.AddBridgeVLAN(pvt0.Index, false, kernel.BridgeVLAN{VID: 30}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, converged)
	if err := c.SetBridgeOptions(br.Index, kernel.BridgeOptions{VLANFiltering: false}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return kernelLink(t, brName).VLANFiltering })
	waitFor(t, converged)

	// Replug: exactly its entries back, no DB commit.
	delLink(t, "pvt0")
	waitFor(t, func() bool { _, err := kernelLinkErr("pvt0"); return err != nil })
	addVeth(t, "pvt0", trunkMAC, "peer-pvt0")
	waitFor(t, converged)
	if got := e.status().Commits; got != commits {
		t.Errorf("drift repair and a replug made %d DB commits, want 0", got-commits)
	}

	// A reload changing one port's VLANs: the dry run names that port only.
	e.writeProfile(strings.Replace(bridgeVLANProfile, "tagged = [10, 20]", "tagged = [10, 30]", 1))
	out, errOut, code = ifctl(t, e.socket, "reload", "--dry-run")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 2 || !strings.HasPrefix(lines[0], "vlan-add pvt0 vid 30 tagged") || !strings.HasPrefix(lines[1], "vlan-del pvt0 vid 20") {
		t.Fatalf("reload --dry-run: %q %q %d", out, errOut, code)
	}
	if _, errOut, code := ifctl(t, e.socket, "reload"); code != 0 {
		t.Fatalf("reload: %q %d", errOut, code)
	}
	trunk = []kernel.BridgeVLAN{{VID: 1, PVID: true, Untagged: true}, {VID: 10}, {VID: 30}}
	waitFor(t, converged)
	e.checkAgree()
}
