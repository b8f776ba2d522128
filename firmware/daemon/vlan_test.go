package daemon

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/jsimonetti/rtnetlink/v2/driver"
	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/kernel"
	"golang.org/x/sys/unix"
)

// need8021q skips t on a kernel without 802.1Q (the CI host's): such a
// test runs in the QEMU guests (qemu-test TestGuestKernelTests), whose
// report fails on any skip. The probe is a VLAN on a throw-away bridge.
func need8021q(t *testing.T) {
	t.Helper()
	c, err := kernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	br, err := c.CreateBridge("t8021q", 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = c.Delete(br.Index) }()
	v, err := c.CreateVLAN("t8021q.2", br.Index, 2, 0)
	switch {
	case err == nil:
		_ = c.Delete(v.Index)
	case errors.Is(err, unix.EOPNOTSUPP):
		t.Skipf("no 802.1Q in this kernel (%v): runs inside the QEMU guests (qemu-test/README.md, the kernel tests inside the guests)", err)
	default:
		t.Fatalf("probe for 8021q: %v", err)
	}
}

// addVeth creates a veth pair through netlink (no iproute2: the guests'
// image has none), name with the MAC mac (a veth otherwise gets a random
// one, and a port's identity includes its MAC: a new MAC is new hardware),
// and deletes it at the end of the test.
func addVeth(t *testing.T, name string, mac net.HardwareAddr, peer string) {
	t.Helper()
	c, err := rtnetlink.Dial(nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Link.New(&rtnetlink.LinkMessage{
		Family: unix.AF_UNSPEC,
		Attributes: &rtnetlink.LinkAttributes{
			Name:    name,
			Address: mac,
			Info: &rtnetlink.LinkInfo{Kind: "veth", Data: &driver.Veth{
				PeerInfo: &rtnetlink.LinkMessage{Family: unix.AF_UNSPEC, Attributes: &rtnetlink.LinkAttributes{Name: peer}},
			}},
		},
	})
	if err != nil {
		t.Fatalf("add veth %s/%s: %v", name, peer, err)
	}
	t.Cleanup(func() { delLink(t, name) })
}

// delLink deletes a link by name if it exists.
func delLink(t *testing.T, name string) {
	t.Helper()
	c, err := kernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if l, err := c.LinkByName(name); err == nil {
		if err := c.Delete(l.Index); err != nil && !errors.Is(err, kernel.ErrNotFound) {
			t.Fatalf("delete %s: %v", name, err)
		}
	}
}

// TestVLANEndToEnd drives the real ifmgrd and ifctl binaries: "ifctl create
// vlan" makes a VLAN the kernel reports with the right kind, parent and VID;
// the same VID on the same parent is refused with ErrVLANExists (exit 1
// with its text from ifctl, the error value through the API) and no unit is
// spent on it; destroying the parent through ifctl takes the VLAN with it,
// in the kernel and in the records.
func TestVLANEndToEnd(t *testing.T) {
	e := newEnv(t)
	need8021q(t)
	d := e.startProc(t)
	defer func() { _ = d.cmd.Process.Kill(); _ = d.cmd.Wait() }()

	out, errOut, code := ifctl(t, e.socket, "create", "bridge")
	if out != "bridge0\n" || code != 0 {
		t.Fatalf("create bridge: %q %q %d", out, errOut, code)
	}
	out, errOut, code = ifctl(t, e.socket, "create", "vlan", "--dev", "bridge0", "--vid", "10")
	if out != "vlan0\n" || code != 0 || errOut != "" {
		t.Fatalf("create vlan: %q %q %d", out, errOut, code)
	}
	owned := kernelOwned(t, e.group)
	br, v := owned["bridge0"], owned["vlan0"]
	if v.Kind != "vlan" || v.VLANID != 10 || v.IfLink != br.Index || br.Index == 0 || v.IfLinkOtherNS {
		t.Fatalf("kernel has vlan0 %+v on bridge0 %+v, want vlan 10 on it", v, br)
	}

	_, errOut, code = ifctl(t, e.socket, "create", "vlan", "--dev", "bridge0", "--vid", "10")
	if code != 1 || !strings.HasPrefix(errOut, "ifctl: ") || !strings.Contains(errOut, ifmgr.ErrVLANExists.Error()) {
		t.Errorf("duplicate vid through ifctl: %q %d", errOut, code)
	}
	if _, err := e.client().Create("vlan", "bridge0", 10); !errors.Is(err, ifmgr.ErrVLANExists) {
		t.Errorf("duplicate vid through the API: %v", err)
	}
	// A bad VID and a missing parent cost nothing either.
	if _, err := e.client().Create("vlan", "bridge0", 4095); !errors.Is(err, ifmgr.ErrBadVID) {
		t.Errorf("vid 4095: %v", err)
	}
	if _, err := e.client().Create("vlan", "nosuch0", 11); !errors.Is(err, ifmgr.ErrNoSuchLink) {
		t.Errorf("vlan on a missing parent: %v", err)
	}
	// The refusals spent no unit: the next VLAN is vlan1.
	out, errOut, code = ifctl(t, e.socket, "create", "vlan", "--dev", "bridge0", "--vid", "11")
	if out != "vlan1\n" || code != 0 {
		t.Fatalf("create vlan 11: %q %q %d", out, errOut, code)
	}
	if got := kernelOwned(t, e.group)["vlan1"]; got.VLANID != 11 || got.IfLink != br.Index {
		t.Fatalf("kernel has vlan1 %+v", got)
	}
	e.checkAgree()

	if _, errOut, code := ifctl(t, e.socket, "destroy", "bridge0"); code != 0 {
		t.Fatalf("destroy bridge0: %q %d", errOut, code)
	}
	if left := kernelOwned(t, e.group); len(left) != 0 {
		t.Fatalf("after the parent's destruction the kernel still has %v", left)
	}
	waitFor(t, func() bool {
		list, err := e.client().List()
		return err == nil && len(list) == 0
	})
	e.checkAgree()
}

// TestProfileVLANsFollowTheirPort: a port rule with vlans = [10, 20] gets
// both VLANs on its port, read back from the kernel (kind, parent, VID).
// Unplugging the port (deleting it) takes its VLANs out of the kernel, but
// their units stay reserved for that hardware; plugging it back gives the
// same names, without a DB write.
func TestProfileVLANsFollowTheirPort(t *testing.T) {
	e := newEnv(t)
	need8021q(t)
	e.writeProfile(`
board = "vlans"
[[port]]
name = "trunk"
match.name = "pv*"
vlans = [10, 20]
`)
	e.start()
	mac := net.HardwareAddr{0x02, 0, 0, 0, 0xab, 0x01}
	addVeth(t, "pv0", mac, "peer-pv0")
	// The VLANs on pv0 (whatever its ifindex), by VID.
	vlans := func() map[int]kernel.Link {
		out := map[int]kernel.Link{}
		port, err := kernelLinkErr("pv0")
		for _, l := range kernelOwned(t, e.group) {
			if l.Kind == "vlan" && err == nil && l.IfLink == port.Index {
				out[int(l.VLANID)] = l
			}
		}
		return out
	}
	waitFor(t, func() bool { return len(vlans()) == 2 })
	port := kernelLink(t, "pv0")
	first := vlans()
	for _, vid := range []int{10, 20} {
		l := first[vid]
		if !strings.HasPrefix(l.Name, "vlan") || l.IfLink != port.Index {
			t.Fatalf("vid %d: %+v, want a vlanN on pv0 (%d)", vid, l, port.Index)
		}
	}
	commits := e.status().Commits
	e.checkAgree()

	delLink(t, "pv0")
	waitFor(t, func() bool {
		for _, l := range kernelOwned(t, e.group) {
			if l.Kind == "vlan" {
				return false
			}
		}
		return true
	})
	list := e.checkAgree()
	reserved := map[string]bool{}
	for _, in := range list {
		reserved[in.Name] = in.State == "absent"
	}
	for _, vid := range []int{10, 20} {
		if !reserved[first[vid].Name] {
			t.Errorf("vid %d: %s not kept reserved after the port went: %+v", vid, first[vid].Name, list)
		}
	}
	// A VLAN made through ifctl meanwhile may not take a reserved unit.
	if _, err := e.client().Create("bridge", "", 0); err != nil {
		t.Fatal(err)
	}
	other, err := e.client().Create("vlan", "bridge0", 30)
	if err != nil {
		t.Fatal(err)
	}
	for _, vid := range []int{10, 20} {
		if other.Name == first[vid].Name {
			t.Fatalf("ifctl's vlan took %s, reserved for vid %d on pv0", other.Name, vid)
		}
	}

	addVeth(t, "pv0", mac, "peer-pv0")
	waitFor(t, func() bool { return len(vlans()) == 2 })
	port = kernelLink(t, "pv0")
	for vid, l := range vlans() {
		if l.Name != first[vid].Name || l.IfLink != port.Index {
			t.Errorf("replug: vid %d is %+v, first time %s", vid, l, first[vid].Name)
		}
	}
	// Two commits: the bridge and the VLAN created above; the unplug and
	// the replug wrote nothing.
	if c := e.status().Commits; c != commits+2 {
		t.Errorf("unplug and replug made %d DB commits besides ifctl's two, want 0", int64(c)-int64(commits)-2)
	}
	e.checkAgree()
}

func kernelLink(t *testing.T, name string) kernel.Link {
	t.Helper()
	l, err := kernelLinkErr(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func kernelLinkErr(name string) (kernel.Link, error) {
	c, err := kernel.Dial()
	if err != nil {
		return kernel.Link{}, err
	}
	defer c.Close()
	return c.LinkByName(name)
}
