package daemon

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/ifname"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
	"github.com/uroute/uroute/persist"
)

// addVeth makes a foreign veth (no permanent MAC: the kernel gives veths a
// random or a set address, never IFLA_PERM_ADDRESS) with an optional MAC.
func (e *env) addVeth(name, mac string) {
	e.t.Helper()
	args := []string{"link", "add", name}
	if mac != "" {
		args = append(args, "address", mac)
	}
	args = append(args, "group", fmt.Sprint(e.foreignGroup()), "type", "veth", "peer", "name", "peer-"+name, "group", fmt.Sprint(e.foreignGroup()))
	if err := ip(e.t, args...); err != nil {
		e.t.Fatal(err)
	}
}

// ownedBridges is what the kernel says ifmgr owns, bridges only.
func (e *env) ownedBridges() map[string]kernel.Link {
	e.t.Helper()
	out := map[string]kernel.Link{}
	for name, l := range kernelOwned(e.t, e.group) {
		if l.Kind == kernel.KindBridge {
			out[name] = l
		}
	}
	return out
}

// The longest rule names a profile may have (persist.MaxRuleNameLen): the
// kernel takes the alias of what they derive, and after a DB loss ifmgr
// recognises its bridge by it instead of making a second one. The worst
// case the bound is computed for (a VLAN identity, which the host kernel
// cannot make: no 8021q) is set on that bridge too: exactly 255 bytes,
// taken whole.
func TestLongestRuleNameAliasInKernel(t *testing.T) {
	e := newEnv(t)
	bridgeRule, portRule := strings.Repeat("b", persist.MaxRuleNameLen), strings.Repeat("p", persist.MaxRuleNameLen)
	e.writeProfile(fmt.Sprintf(`
board = "long"
[[port]]
name = %q
match.name = "ln*"
bridge = %q
[[bridge]]
name = %q
per_port = true
`, portRule, bridgeRule, bridgeRule))
	e.addVeth("ln0", "")
	e.start()
	var bridge string
	waitFor(t, func() bool { bridge = linkMaster(t, "ln0"); return bridge != "" })
	want := plan.PortBridgeIdentity(bridgeRule, plan.PortIdentity(portRule, plan.Link{Name: "ln0"}))
	got := e.ownedBridges()
	if len(got) != 1 || got[bridge].Alias != want.Alias() {
		t.Fatalf("owned bridges %v, want only %s with alias %q", got, bridge, want.Alias())
	}

	// The worst case of the bound, on a real link.
	worst := persist.Identity{Rule: persist.RulePort + portRule, BusPath: persist.BusDigest("x"),
		Link: strings.Repeat("\x01", ifname.MaxNameLen), VID: ifname.MaxVID}
	if n := len(worst.Alias()); n != persist.MaxAliasLen {
		t.Fatalf("worst-case alias is %d bytes, want exactly %d (the bound is not tight)", n, persist.MaxAliasLen)
	}
	c, err := kernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetAlias(got[bridge].Index, worst.Alias()); err != nil {
		t.Fatalf("kernel refused a %d-byte alias: %v", len(worst.Alias()), err)
	}
	if l, err := c.LinkByIndex(got[bridge].Index); err != nil || l.Alias != worst.Alias() {
		t.Fatalf("alias read back %q (%v), want %q", l.Alias, err, worst.Alias())
	}
	if err := c.SetAlias(got[bridge].Index, want.Alias()); err != nil {
		t.Fatal(err)
	}

	// A lost DB: the bridge is recognised by its alias, not duplicated.
	e.stop()
	if err := os.Remove(e.db); err != nil {
		t.Fatal(err)
	}
	e.start()
	if err := e.client().Resync(); err != nil {
		t.Fatal(err)
	}
	if after := e.ownedBridges(); len(after) != 1 || after[bridge].Index != got[bridge].Index || linkMaster(t, "ln0") != bridge {
		t.Fatalf("after a DB loss: owned bridges %v, ln0 in %q; want only %s, ln0 in it", after, linkMaster(t, "ln0"), bridge)
	}
}

// A port without a permanent MAC whose address changes 20 times keeps its
// per-port bridge: same unit, no new reservation, no DB write. (The current
// MAC was its identity: each change made a new bridge and kept a
// reservation for the old one.)
func TestVirtualPortMACChangeKeepsBridge(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(`
board = "macs"
[[port]]
name = "lan"
match.name = "vp*"
bridge = "lan"
[[bridge]]
name = "lan"
per_port = true
`)
	e.addVeth("vp1", "")
	e.start()
	var bridge string
	waitFor(t, func() bool { bridge = linkMaster(t, "vp1"); return bridge != "" })
	st := e.status()
	commits, reservations := st.Commits, st.Managed[string(kernel.KindBridge)]
	for i := 0; i < 20; i++ {
		if err := ip(t, "link", "set", "vp1", "address", fmt.Sprintf("02:00:00:00:10:%02x", i)); err != nil {
			t.Fatal(err)
		}
		// Resync: the owner has handled the change's event (and re-read
		// everything) when it answers.
		if err := e.client().Resync(); err != nil {
			t.Fatal(err)
		}
		if got := linkMaster(t, "vp1"); got != bridge {
			t.Fatalf("MAC change %d: vp1 in %q, was in %s", i+1, got, bridge)
		}
	}
	st = e.status()
	if st.Commits != commits || st.Managed[string(kernel.KindBridge)] != reservations {
		t.Errorf("20 MAC changes: %d DB commits, %d bridge records (was %d); want 0 commits, no new record", st.Commits-commits, st.Managed[string(kernel.KindBridge)], reservations)
	}
	if owned := e.ownedBridges(); len(owned) != 1 {
		t.Errorf("owned bridges after 20 MAC changes: %v, want only %s", owned, bridge)
	}
	e.checkAgree()
}

// An upgrade from firmware that took a virtual port's current MAC as its
// identity: the unit reserved under the old identity (bridge3, in the DB
// and on the running bridge's alias) is moved to the new identity in one
// commit; no bridge is made or renumbered, and nothing is written again at
// the next start.
func TestLegacyVirtualIdentityMigrated(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(`
board = "upgrade"
[[port]]
name = "lan"
match.name = "vp*"
bridge = "lan"
[[bridge]]
name = "lan"
per_port = true
`)
	const mac = "02:00:00:00:20:01"
	e.addVeth("vp1", mac)
	legacy := persist.Identity{Rule: persist.RuleBridge + "lan", PermMAC: mac}
	other := persist.Identity{Rule: persist.RuleBridge + "lan", PermMAC: "02:00:00:00:20:99"} // absent hardware
	if err := os.MkdirAll(strings.TrimSuffix(e.db, "/ifmgr.db"), 0o755); err != nil {
		t.Fatal(err)
	}
	s, _, err := persist.Open(e.db, persist.Options{Logger: testLogger(nil)})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Apply([]persist.Record{{Cloner: "bridge", Unit: 3, Identity: legacy, LastSeen: 1}, {Cloner: "bridge", Unit: 1, Identity: other, LastSeen: 1}}, nil); err != nil {
		t.Fatal(err)
	}
	s.Close()
	for _, args := range [][]string{
		{"link", "add", "bridge3", "group", fmt.Sprint(e.group), "type", "bridge"},
		{"link", "set", "bridge3", "alias", legacy.Alias()},
		{"link", "set", "vp1", "master", "bridge3"},
	} {
		if err := ip(t, args...); err != nil {
			t.Fatal(err)
		}
	}
	index := e.ownedBridges()["bridge3"].Index

	e.start()
	if err := e.client().Resync(); err != nil {
		t.Fatal(err)
	}
	want := plan.PortBridgeIdentity("lan", plan.PortIdentity("lan", plan.Link{Name: "vp1"}))
	owned := e.ownedBridges()
	if len(owned) != 1 || owned["bridge3"].Index != index || owned["bridge3"].Alias != want.Alias() || linkMaster(t, "vp1") != "bridge3" {
		t.Fatalf("after the upgrade: owned bridges %v, vp1 in %q; want bridge3 (ifindex %d) alone, alias %q, vp1 in it", owned, linkMaster(t, "vp1"), index, want.Alias())
	}
	if c := e.status().Commits; c != 1 {
		t.Errorf("upgrade made %d commits, want 1 (the migration)", c)
	}
	e.stop()
	recs := dbRecords(t, e.db)
	if len(recs) != 2 || !containsString(recs, want.Key()) || !containsString(recs, other.Key()) {
		t.Fatalf("records after the upgrade: %q, want %q (bridge3) and the absent %q (bridge1)", recs, want.Key(), other.Key())
	}
	e.start()
	if err := e.client().Resync(); err != nil {
		t.Fatal(err)
	}
	if c := e.status().Commits; c != 0 {
		t.Errorf("the start after the upgrade made %d commits, want 0", c)
	}
	if linkMaster(t, "vp1") != "bridge3" {
		t.Errorf("vp1 in %q after restart, want bridge3", linkMaster(t, "vp1"))
	}
	var infos []ifmgr.Info
	if infos, err = e.client().List(); err != nil {
		t.Fatal(err)
	}
	units := map[uint32]string{}
	for _, in := range infos {
		units[in.Unit] = in.Identity
	}
	if units[3] != want.Key() || units[1] != other.Key() {
		t.Errorf("units after restart: %v, want 3 -> %s and 1 -> %s", units, want.Key(), other.Key())
	}
}

func containsString(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
