package ifmgr

import (
	"testing"

	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
	"github.com/uroute/uroute/persist"
)

// An upgrade and a DB loss at once: the only trace of the per-port bridge
// of a virtual port is the old-style identity on its alias (the port's MAC
// then). ifmgr adopts the bridge under it, moves it to today's identity
// (name-based) in one commit, rewrites the alias, and makes no second
// bridge; a per-port bridge of a port with a permanent MAC is untouched.
func TestLegacyAliasAdoptedAndMigrated(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	p := mustProfile(t, `
board = "upgrade"
[[port]]
name = "lan"
match.name = "vp*"
bridge = "lan"
[[bridge]]
name = "lan"
per_port = true
`)
	const vmac, pmac = "02:00:00:00:30:01", "52:54:00:00:30:02"
	virt, _ := k.add(kernel.Link{Name: "vp1", MAC: mac(vmac)})
	phys, _ := k.add(kernel.Link{Name: "vp2", MAC: mac(pmac), PermMAC: mac(pmac)})
	legacy := persist.Identity{Rule: persist.RuleBridge + "lan", PermMAC: vmac}
	kept := persist.Identity{Rule: persist.RuleBridge + "lan", PermMAC: pmac}
	b5, _ := k.add(kernel.Link{Name: "bridge5", Kind: kernel.KindBridge, Group: DefaultOwnerGroup, Alias: legacy.Alias()})
	b6, _ := k.add(kernel.Link{Name: "bridge6", Kind: kernel.KindBridge, Group: DefaultOwnerGroup, Alias: kept.Alias()})
	k.SetMaster(virt.Index, b5.Index)
	k.SetMaster(phys.Index, b6.Index)

	h := startConfig(t, k, s, Config{Cloners: testCloners(t, DefaultMaxUnit), Profile: p})
	h.settle()
	want := plan.PortBridgeIdentity("lan", plan.PortIdentity("lan", plan.Link{Name: "vp1"}))
	recs, _ := s.Records()
	got := map[uint32]string{}
	for _, r := range recs {
		got[r.Unit] = r.Identity.Key()
	}
	if len(got) != 2 || got[5] != want.Key() || got[6] != kept.Key() {
		t.Fatalf("records %v, want 5 -> %s, 6 -> %s", got, want.Key(), kept.Key())
	}
	links := k.names()
	if links["bridge5"].Alias != want.Alias() || links["bridge6"].Alias != kept.Alias() {
		t.Errorf("aliases: bridge5 %q, bridge6 %q", links["bridge5"].Alias, links["bridge6"].Alias)
	}
	if links["vp1"].Master != b5.Index || links["vp2"].Master != b6.Index {
		t.Errorf("ports moved: vp1 in %d, vp2 in %d", links["vp1"].Master, links["vp2"].Master)
	}
	for name, l := range links {
		if l.Kind == kernel.KindBridge && name != "bridge5" && name != "bridge6" {
			t.Errorf("a second bridge was made: %s", name)
		}
	}
	// The new identity does not follow the MAC: no write for a change.
	commits := s.Commits()
	k.modify(virt.Index, func(l *kernel.Link) { l.MAC = mac("02:00:00:00:30:99") })
	h.m.Resync(t.Context())
	h.settle()
	if s.Commits() != commits || k.names()["vp1"].Master != b5.Index {
		t.Errorf("a MAC change: %d commits, vp1 in %d", s.Commits()-commits, k.names()["vp1"].Master)
	}
}
