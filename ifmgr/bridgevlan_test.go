package ifmgr

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr/kernel"
)

const filteringProfile = `
board = "test"
[[bridge]]
name = "lan"
vlan_filtering = true
self_vlans = [1, 10]

[[port]]
name = "trunk"
match.name = "eth0"
bridge = "lan"
bridge_vlan = { pvid = 1, tagged = [10, 20] }

[[port]]
name = "access"
match.name = "eth1"
bridge = "lan"
bridge_vlan.pvid = 10
`

var (
	bvTagged   = func(vid uint16) kernel.BridgeVLAN { return kernel.BridgeVLAN{VID: vid} }
	bvAccess   = func(vid uint16) kernel.BridgeVLAN { return kernel.BridgeVLAN{VID: vid, PVID: true, Untagged: true} }
	trunkWant  = []kernel.BridgeVLAN{bvAccess(1), bvTagged(10), bvTagged(20)}
	accessWant = []kernel.BridgeVLAN{bvAccess(10)}
	selfWant   = []kernel.BridgeVLAN{bvTagged(1), bvTagged(10)}
)

// vlanRouter is a manager on filteringProfile with eth0 (trunk) and eth1
// (access) present and everything converged.
type vlanRouter struct {
	*harness
	eth0, eth1 kernel.Link
}

func startVLANRouter(t *testing.T) *vlanRouter {
	t.Helper()
	k, s := newFakeKernel(), newFakeStore()
	h := startWithProfile(t, k, s, mustProfile(t, filteringProfile))
	r := &vlanRouter{harness: h}
	r.eth0, _ = k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01"), MAC: mac("52:54:00:00:00:01")})
	r.eth1, _ = k.add(kernel.Link{Name: "eth1", PermMAC: mac("52:54:00:00:00:02"), MAC: mac("52:54:00:00:00:02")})
	h.settle()
	r.checkMembership()
	return r
}

func (r *vlanRouter) bridge() kernel.Link { return r.k.names()["bridge0"] }

// checkMembership asserts the kernel holds exactly the profile's entries.
func (r *vlanRouter) checkMembership() {
	r.t.Helper()
	br := r.bridge()
	if !br.VLANFiltering || br.DefaultPVID != 0 {
		r.t.Errorf("bridge0: filtering %v, default pvid %d; want on, 0", br.VLANFiltering, br.DefaultPVID)
	}
	for _, c := range []struct {
		name string
		idx  uint32
		want []kernel.BridgeVLAN
	}{{"eth0", r.k.names()["eth0"].Index, trunkWant}, {"eth1", r.k.names()["eth1"].Index, accessWant}, {"bridge0 self", br.Index, selfWant}} {
		if got := r.k.vlansOf(c.idx); !slices.Equal(got, c.want) {
			r.t.Errorf("%s: entries %+v, want %+v", c.name, got, c.want)
		}
	}
	for _, c := range []struct {
		name string
		vid  uint16
	}{{"vlan0", 1}, {"vlan1", 10}} {
		l := r.k.names()[c.name]
		if l.Kind != kernel.KindVLAN || l.IfLink != br.Index || l.VLANID != c.vid {
			r.t.Errorf("%s: %+v, want VLAN %d on bridge0 (ifindex %d)", c.name, l, c.vid, br.Index)
		}
	}
}

// eventually waits (generously: the owner works through the fake's events)
// for cond, without a resync: the events alone must do it.
func (r *vlanRouter) eventually(what string, cond func() bool) {
	r.t.Helper()
	for i := 0; i < 1000; i++ {
		if cond() {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	r.t.Fatalf("%s: never happened", what)
}

type vlanCounts struct{ adds, dels, options, creates, deletes, commits int }

func (r *vlanRouter) counts() vlanCounts {
	r.k.mu.Lock()
	defer r.k.mu.Unlock()
	return vlanCounts{r.k.vlanAdds, r.k.vlanDels, r.k.options, r.k.creates, r.k.deletes, int(r.s.Commits())}
}

func TestBridgeVLANBringUp(t *testing.T) {
	r := startVLANRouter(t)
	got := r.present()
	for name, id := range map[string]string{
		"bridge0": "rule=bridge/lan",
		"vlan0":   "rule=bridge/lan,vid=1",
		"vlan1":   "rule=bridge/lan,vid=10",
	} {
		if got[name].Identity != id {
			t.Errorf("%s: identity %q, want %q (list: %v)", name, got[name].Identity, id, got)
		}
	}
	if got["vlan1"].Parent != "bridge0" {
		t.Errorf("vlan1's parent %q, want bridge0", got["vlan1"].Parent)
	}
	// Six entries on the ports, two on the bridge: one add each, no delete.
	if c := r.counts(); c.adds != 6 || c.dels != 0 {
		t.Errorf("bring-up: %d adds, %d deletes; want 6 and 0", c.adds, c.dels)
	}
	// A restart reads the membership back and changes nothing.
	r.stop()
	before := r.counts()
	h2 := startWithProfile(t, r.k, r.s, mustProfile(t, filteringProfile))
	h2.settle()
	if after := r.counts(); after != before {
		t.Errorf("restart: %+v, was %+v", after, before)
	}
}

// Membership and filtering changed behind ifmgr's back are drift: the
// EventVLAN (or link event) alone brings them back, entry by entry.
func TestBridgeVLANDriftRepaired(t *testing.T) {
	r := startVLANRouter(t)
	eth0, br := r.k.names()["eth0"].Index, r.bridge().Index
	before := r.counts()

	r.k.foreignVLAN(eth0, false, bvTagged(10))  // bridge vlan del dev eth0 vid 10
	r.k.foreignVLAN(eth0, true, bvTagged(3000)) // bridge vlan add dev eth0 vid 3000
	r.k.foreignVLAN(br, true, bvAccess(1))      // self VID 1 made PVID untagged
	r.eventually("membership repaired by the events", func() bool {
		return slices.Equal(r.k.vlansOf(eth0), trunkWant) && slices.Equal(r.k.vlansOf(br), selfWant)
	})
	r.settle()
	after := r.counts()
	if adds, dels := after.adds-before.adds, after.dels-before.dels; adds != 2 || dels != 1 {
		t.Errorf("repair: %d adds, %d deletes; want 2 (eth0 vid 10, bridge0 self vid 1's flags) and 1 (eth0 vid 3000)", adds, dels)
	}

	// ip link set bridge0 type bridge vlan_filtering 0
	r.k.modify(br, func(l *kernel.Link) { l.VLANFiltering = false })
	r.eventually("filtering turned back on", func() bool { return r.bridge().VLANFiltering })
	r.settle()
	r.checkMembership()
	if c := r.counts(); c.options != 1 || c.commits != before.commits || c.creates != before.creates || c.deletes != before.deletes {
		t.Errorf("drift repair: %+v, was %+v; want one set-filtering and nothing else", c, before)
	}
}

// A replug (new ifindex, no entries) gets exactly its entries back: no
// flush, nothing on the other port, no DB commit.
func TestBridgeVLANReplugZeroCommits(t *testing.T) {
	r := startVLANRouter(t)
	before := r.counts()
	for i := 0; i < 20; i++ {
		r.k.Delete(r.k.names()["eth0"].Index)
		r.settle()
		r.k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01"), MAC: mac("52:54:00:00:00:01")})
		r.settle()
		r.checkMembership()
	}
	after := r.counts()
	if after.commits != before.commits {
		t.Errorf("20 replugs made %d DB commits, want 0", after.commits-before.commits)
	}
	if adds, dels := after.adds-before.adds, after.dels-before.dels; adds != 20*len(trunkWant) || dels != 0 {
		t.Errorf("20 replugs: %d adds, %d deletes; want %d and 0", adds, dels, 20*len(trunkWant))
	}
	if after.creates != before.creates {
		t.Errorf("replugs created %d links", after.creates-before.creates)
	}
}

// A reload that changes one port's VLANs touches that port only, and its
// dry run says so first.
func TestBridgeVLANReloadTouchesOnePort(t *testing.T) {
	r := startVLANRouter(t)
	ctx := context.Background()
	eth0 := r.k.names()["eth0"].Index
	changed := mustProfile(t, strings.Replace(filteringProfile, "tagged = [10, 20]", "tagged = [10, 30]", 1))
	before := r.counts()

	dry, err := r.m.Reload(ctx, changed, true)
	want := []string{"vlan-add eth0 vid 30 tagged: ", "vlan-del eth0 vid 20: "}
	if err != nil || len(dry) != len(want) {
		t.Fatalf("dry run: %q, %v; want %q", dry, err, want)
	}
	for i := range want {
		if !strings.HasPrefix(dry[i], want[i]) {
			t.Errorf("dry run line %d: %q, want %q...", i, dry[i], want[i])
		}
	}
	if c := r.counts(); c != before {
		t.Fatalf("dry run changed something: %+v, was %+v", c, before)
	}

	lines, err := r.m.Reload(ctx, changed, false)
	if err != nil || len(lines) != 2 {
		t.Fatalf("reload: %q, %v", lines, err)
	}
	r.settle()
	after := r.counts()
	if after.adds-before.adds != 1 || after.dels-before.dels != 1 || after.commits != before.commits || after.creates != before.creates {
		t.Errorf("reload: %+v, was %+v; want one add, one delete, nothing else", after, before)
	}
	if got, want := r.k.vlansOf(eth0), []kernel.BridgeVLAN{bvAccess(1), bvTagged(10), bvTagged(30)}; !slices.Equal(got, want) {
		t.Errorf("eth0: %+v, want %+v", got, want)
	}
	if got := r.k.vlansOf(r.k.names()["eth1"].Index); !slices.Equal(got, accessWant) {
		t.Errorf("eth1 changed: %+v", got)
	}
}

// A self VLAN taken out of the profile takes its VLAN link and its self
// entry; turning filtering off stops managing membership.
func TestBridgeVLANSelfRemoved(t *testing.T) {
	r := startVLANRouter(t)
	ctx := context.Background()
	p := mustProfile(t, strings.Replace(filteringProfile, "self_vlans = [1, 10]", "self_vlans = [10]", 1))
	if _, err := r.m.Reload(ctx, p, false); err != nil {
		t.Fatal(err)
	}
	r.settle()
	if _, ok := r.k.names()["vlan0"]; ok {
		t.Error("vlan0 (self VID 1) still there")
	}
	if got, want := r.k.vlansOf(r.bridge().Index), []kernel.BridgeVLAN{bvTagged(10)}; !slices.Equal(got, want) {
		t.Errorf("bridge0 self: %+v, want %+v", got, want)
	}
}

// ifctl list shows each port's membership, ifctl status counts it, both
// from what was read back from the kernel.
func TestBridgeVLANListAndStatus(t *testing.T) {
	r := startVLANRouter(t)
	ctx := context.Background()
	// A member ifmgr did not put there, with an entry its owner gave it.
	wlan, _ := r.k.add(kernel.Link{Name: "wlan0"})
	r.k.SetMaster(wlan.Index, r.bridge().Index)
	r.k.foreignVLAN(wlan.Index, true, bvAccess(10))
	r.settle()

	list, err := r.m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var br Info
	for _, in := range list {
		if in.Name == "bridge0" {
			br = in
		}
	}
	if !br.VLANFiltering || br.SelfVLANs.String() != "1:t,10:t" {
		t.Errorf("bridge0: filtering %v, self %s", br.VLANFiltering, br.SelfVLANs)
	}
	got := map[string]string{}
	for _, p := range br.Ports {
		got[p.Port] = p.VLANs.String()
	}
	want := map[string]string{"eth0": "1:u*,10:t,20:t", "eth1": "10:u*", "wlan0": "10:u*"}
	if len(got) != len(want) {
		t.Errorf("ports %v, want %v", got, want)
	}
	for p, w := range want {
		if got[p] != w {
			t.Errorf("port %s: %q, want %q", p, got[p], w)
		}
	}

	st, err := r.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if bv := st.BridgeVLANs; bv == nil || *bv != (BridgeVLANStatus{Bridges: 1, Ports: 3, PortEntries: 5, SelfEntries: 2, Pending: 0}) {
		t.Errorf("status bridge VLANs: %+v", bv)
	}
}

// A membership change the kernel refuses is a result of its own: the other
// entries are applied, status counts it pending and names it as failed.
func TestBridgeVLANRefusedEntryReported(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	k.mu.Lock()
	k.failVLAN = func(_ uint32, v kernel.BridgeVLAN) error {
		if v.VID == 20 {
			return errors.New("no space left in the switch's VLAN table")
		}
		return nil
	}
	k.mu.Unlock()
	h := startWithProfile(t, k, s, mustProfile(t, filteringProfile))
	k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01"), MAC: mac("52:54:00:00:00:01")})
	h.settle()
	if got, want := k.vlansOf(k.names()["eth0"].Index), []kernel.BridgeVLAN{bvAccess(1), bvTagged(10)}; !slices.Equal(got, want) {
		t.Errorf("eth0: %+v, want %+v (all but the refused one)", got, want)
	}
	st, err := h.m.Status(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.BridgeVLANs == nil || st.BridgeVLANs.Pending != 1 {
		t.Errorf("status bridge VLANs: %+v, want 1 pending", st.BridgeVLANs)
	}
	found := false
	for _, r := range st.Refused {
		if strings.HasPrefix(r.Action, "vlan-add eth0 vid 20 tagged") && strings.Contains(r.Error, "VLAN table") {
			found = true
		}
	}
	if !found {
		t.Errorf("refused: %+v, want vlan-add eth0 vid 20 with the kernel's reason", st.Refused)
	}
}
