package ifmgr

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

const testProfile = `
board = "test"
[[port]]
name = "lan"
match.name = "eth*"
bridge = "lan"
vlans = [10, 20]
vlan_bridge = { 10 = "guest" }
[[bridge]]
name = "lan"
[[bridge]]
name = "guest"
keep_empty = true
`

func mustProfile(t *testing.T, text string) *board.Profile {
	t.Helper()
	p, err := board.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func startWithProfile(t *testing.T, k *fakeKernel, s *fakeStore, p *board.Profile) *harness {
	t.Helper()
	return startConfig(t, k, s, Config{Cloners: testCloners(t, DefaultMaxUnit), Profile: p})
}

func mac(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

// byName lists managed interfaces (present in the kernel) by name.
func (h *harness) present() map[string]Info {
	h.t.Helper()
	h.settle()
	list, _ := h.m.List(context.Background())
	out := map[string]Info{}
	for _, in := range list {
		if in.State != "absent" {
			out[in.Name] = in
		}
	}
	return out
}

func TestProfilePortAppearsAndReplugs(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := startWithProfile(t, k, s, mustProfile(t, testProfile))
	if got := h.present(); len(got) != 1 || got["bridge0"].Identity != "rule=bridge/guest" {
		t.Fatalf("empty router: %v", got)
	}
	eth, _ := k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01"), MAC: mac("52:54:00:00:00:01")})
	first := h.present()
	if len(first) != 4 {
		t.Fatalf("after eth0 appeared: %v", first)
	}
	l, _ := k.LinkByIndex(eth.Index)
	if br := k.names()["bridge1"]; l.Master != br.Index {
		t.Errorf("eth0 not a port of the lan bridge: master %d", l.Master)
	}
	if v := k.names()["vlan0"]; v.Master != k.names()["bridge0"].Index || v.IfLink != eth.Index {
		t.Errorf("vlan 10 not on eth0 in the guest bridge: %+v", v)
	}
	commits := s.Commits()

	for i := 0; i < 50; i++ {
		k.Delete(eth.Index) // unplug: the kernel takes the VLANs
		h.settle()
		eth, _ = k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01"), MAC: mac("52:54:00:00:00:01")})
		got := h.present()
		for name, in := range first {
			if got[name].Identity != in.Identity {
				t.Fatalf("replug %d: %s is %q, was %q", i, name, got[name].Identity, in.Identity)
			}
		}
	}
	if s.Commits() != commits {
		t.Errorf("50 replugs of known hardware made %d DB commits, want 0", s.Commits()-commits)
	}
	// A carrier flap changes nothing.
	k.modify(eth.Index, func(l *kernel.Link) { l.Flags ^= 0x10000 })
	h.settle()
	if s.Commits() != commits {
		t.Error("a flap wrote the DB")
	}
	// Other hardware gets new units, in one commit.
	k.add(kernel.Link{Name: "eth1", PermMAC: mac("52:54:00:00:00:02")})
	got := h.present()
	if len(got) != 6 || s.Commits() != commits+1 {
		t.Errorf("second port: %d interfaces, %d commits", len(got), s.Commits()-commits)
	}
	if err := h.m.Destroy(context.Background(), "bridge1"); !errors.Is(err, ErrFromProfile) {
		t.Errorf("destroy of a derived bridge: %v", err)
	}

	// Restart: same units, no writes.
	h.stop()
	c2 := s.Commits()
	h2 := startWithProfile(t, k, s, mustProfile(t, testProfile))
	after := h2.present()
	for name, in := range got {
		if after[name].Identity != in.Identity {
			t.Errorf("restart moved %s: %q -> %q", name, in.Identity, after[name].Identity)
		}
	}
	if s.Commits() != c2 {
		t.Errorf("restart made %d commits", s.Commits()-c2)
	}
	h2.checkConsistent()
}

func TestReloadTouchesOnlyWhatChanged(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := startWithProfile(t, k, s, mustProfile(t, testProfile))
	k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01")})
	before := h.present()
	ctx := context.Background()

	changed := mustProfile(t, strings.Replace(testProfile, "vlans = [10, 20]", "vlans = [10, 30]", 1))
	dry, err := h.m.Reload(ctx, changed, true)
	if err != nil || len(dry) != 2 || !strings.HasPrefix(dry[0], "delete vlan1") || !strings.HasPrefix(dry[1], "create vlan") {
		t.Fatalf("dry run: %q %v", dry, err)
	}
	if got := h.present(); len(got) != len(before) {
		t.Fatal("dry run changed something")
	}
	if _, err := h.m.Reload(ctx, changed, false); err != nil {
		t.Fatal(err)
	}
	after := h.present()
	for name, in := range before {
		if name == "vlan1" {
			if _, ok := after[name]; ok {
				t.Error("vlan 20 still there")
			}
			continue
		}
		if after[name].Index != in.Index {
			t.Errorf("%s was re-created (ifindex %d -> %d)", name, in.Index, after[name].Index)
		}
	}
	var vid30 bool
	for _, in := range after {
		vid30 = vid30 || in.VID == 30
	}
	if !vid30 {
		t.Errorf("vlan 30 not created: %v", after)
	}
	// Reloading the same profile again does nothing at all.
	creates, deletes := k.creates, k.deletes
	if _, err := h.m.Reload(ctx, mustProfile(t, strings.Replace(testProfile, "vlans = [10, 20]", "vlans = [10, 30]", 1)), false); err != nil {
		t.Fatal(err)
	}
	if k.creates != creates || k.deletes != deletes {
		t.Error("an unchanged profile touched links")
	}
	// A profile changing the cloners is refused, and the one in force stays.
	bad := mustProfile(t, "board = \"x\"\n[cloners.bridge]\ntemplate = \"br%d\"\n"+testProfile[strings.Index(testProfile, "[[port]]"):])
	if _, err := h.m.Reload(ctx, bad, false); !errors.Is(err, ErrBadProfile) {
		t.Errorf("cloner change: %v", err)
	}
	st, _ := h.m.Status(ctx)
	if st.Rejected == "" || !strings.Contains(st.Profile, "test") {
		t.Errorf("status after a refused profile: %+v", st)
	}
}

// Hardware that keeps changing (years of USB dongles, each its own
// permanent MAC) must not grow the table without bound; the reservations
// absent longest go first.
func TestReservationsAreBounded(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	p := mustProfile(t, `
board = "usb"
[[port]]
name = "usb"
match.name = "usb*"
bridge = "tether"
[[bridge]]
name = "tether"
per_port = true
`)
	h := startConfig(t, k, s, Config{Cloners: testCloners(t, DefaultMaxUnit), Profile: p, MaxAbsent: 3})

	for i := 0; i < 10; i++ {
		m := mac(fmt.Sprintf("02:00:00:00:00:%02x", i))
		l, _ := k.add(kernel.Link{Name: "usb0", MAC: m, PermMAC: m}) // ten dongles, one after the other
		h.settle()
		k.Delete(l.Index)
		h.settle()
	}
	recs, _ := s.Records()
	if len(recs) > 4 { // the dongle being allocated plus 3 absent
		t.Fatalf("%d records kept for 10 dongles seen once each, bound 3: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Identity.PermMAC < "02:00:00:00:00:06" {
			t.Errorf("kept %s: the newest must survive, the oldest go", r.Identity.Key())
		}
	}
	// A recent dongle comes back to its unit without a write.
	commits := s.Commits()
	k.add(kernel.Link{Name: "usb0", MAC: mac("02:00:00:00:00:09"), PermMAC: mac("02:00:00:00:00:09")})
	h.settle()
	if s.Commits() != commits {
		t.Error("a known dongle's return wrote the DB")
	}
}

// A refused action is a value: status shows it with its error, the reload
// dry-run marks it, a reload shows what failed, and the next convergence
// that succeeds clears it.
func TestRefusedActionsAreReported(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := startWithProfile(t, k, s, mustProfile(t, testProfile))
	ctx := context.Background()
	k.failCreate = func(name string) error {
		if strings.HasPrefix(name, "vlan") {
			return errors.New("ENOMEM")
		}
		return nil
	}
	k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01")})
	h.settle()
	st, err := h.m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	lc := st.LastConverge
	if lc == nil || len(lc.Failed) != 2 {
		t.Fatalf("last converge: %+v", lc)
	}
	for _, f := range lc.Failed {
		if !strings.HasPrefix(f.Action, "create vlan") || !strings.Contains(f.Error, "ENOMEM") || f.Retry {
			t.Errorf("failed action %+v", f)
		}
	}
	p := mustProfile(t, testProfile)
	dry, err := h.m.Reload(ctx, p, true)
	if err != nil {
		t.Fatal(err)
	}
	marked := 0
	for _, line := range dry {
		if strings.Contains(line, " -- failed last time: ") && strings.Contains(line, "ENOMEM") {
			marked++
		}
	}
	if marked != 2 {
		t.Errorf("dry run marks %d refused actions, want 2: %q", marked, dry)
	}
	changed := mustProfile(t, strings.Replace(testProfile, "vlans = [10, 20]", "vlans = [10, 30]", 1))
	lines, err := h.m.Reload(ctx, changed, false)
	if err != nil {
		t.Fatal(err)
	}
	failed := 0
	for _, line := range lines {
		if strings.Contains(line, " -- failed: ") {
			failed++
		}
	}
	if failed != 2 {
		t.Errorf("reload shows %d failures, want 2: %q", failed, lines)
	}
	k.mu.Lock()
	k.failCreate = nil
	k.mu.Unlock()
	if err := h.m.Resync(ctx); err != nil {
		t.Fatal(err)
	}
	st, _ = h.m.Status(ctx)
	if lc := st.LastConverge; lc == nil || len(lc.Failed) != 0 || lc.Done != 2 {
		t.Fatalf("after the kernel accepts: %+v", lc)
	}
	vlans := 0
	for _, in := range h.present() {
		if in.Kind == kernel.KindVLAN {
			vlans++
		}
	}
	if vlans != 2 {
		t.Errorf("%d VLANs present, want 2", vlans)
	}
}

// TestReloadDeletingEverything: a profile that derives nothing any more
// deletes every link of ifmgr's group in one RTM_DELLINK by IFLA_GROUP;
// one that keeps some deletes one link at a time and leaves the rest.
func TestReloadDeletingEverything(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := startWithProfile(t, k, s, mustProfile(t, testProfile))
	k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01")})
	k.add(kernel.Link{Name: "eth1", PermMAC: mac("52:54:00:00:00:02")})
	before := h.present()
	if len(before) < 4 {
		t.Fatalf("profile made %v", before)
	}
	ctx := context.Background()

	// Keeping the bridges: per-link deletes of the VLANs.
	noVLANs := mustProfile(t, strings.Replace(testProfile, "vlans = [10, 20]\nvlan_bridge = { 10 = \"guest\" }\n", "", 1))
	if _, err := h.m.Reload(ctx, noVLANs, false); err != nil {
		t.Fatal(err)
	}
	if k.groupDeletes != 0 {
		t.Errorf("%d group deletes for a plan that keeps links of the group", k.groupDeletes)
	}
	kept := h.present()
	if _, ok := kept["bridge0"]; !ok || len(kept) >= len(before) {
		t.Errorf("after dropping the VLANs: %v (before %v)", kept, before)
	}

	if _, err := h.m.Reload(ctx, mustProfile(t, "board = \"test\"\n"), false); err != nil {
		t.Fatal(err)
	}
	if got := h.present(); len(got) != 0 {
		t.Errorf("still present after a profile with nothing: %v", got)
	}
	if k.groupDeletes != 1 {
		t.Errorf("%d group deletes, want 1", k.groupDeletes)
	}
	for _, l := range k.names() {
		if l.Group == h.m.cfg.OwnerGroup {
			t.Errorf("%s of ifmgr's group left in the kernel", l.Name)
		}
	}
	// The reservations stay, for when the profile wants them again.
	if n := len(s.recs); n < len(before) {
		t.Errorf("%d records left, want the %d reservations kept", n, len(before))
	}
}

// TestPortsJoinBeforeAliases: a bring-up sends every port's join before
// any created link's alias (the ports forward sooner; the alias is
// bookkeeping), every create after its unit's commit, and still writes
// every alias and brings every VLAN up.
func TestPortsJoinBeforeAliases(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	const ports = 8
	for i := range ports {
		k.add(kernel.Link{Name: fmt.Sprintf("eth%d", i), PermMAC: mac(fmt.Sprintf("52:54:00:00:01:%02x", i))})
	}
	var order []kernel.Op
	k.onBatch = func(ops []kernel.Op) {
		for _, o := range ops {
			if o.Kind == kernel.OpCreateBridge || o.Kind == kernel.OpCreateVLAN {
				cloner := strings.TrimRight(o.Name, "0123456789")
				unit, _ := strconv.Atoi(o.Name[len(cloner):])
				s.mu.Lock()
				_, ok := s.recs[persist.RecordKey{Cloner: cloner, Unit: uint32(unit)}]
				s.mu.Unlock()
				if !ok {
					t.Errorf("%s sent before its unit's record was committed", o)
				}
			}
		}
		order = append(order, ops...)
	}
	h := startWithProfile(t, k, s, mustProfile(t, testProfile))
	got := h.present()
	if len(got) != 2+2*ports {
		t.Fatalf("%d interfaces, want %d: %v", len(got), 2+2*ports, got)
	}
	lastJoin, firstAlias, aliases := -1, len(order), 0
	for i, o := range order {
		if o.Kind != kernel.OpSetLink {
			continue
		}
		if o.Set&kernel.SetMaster != 0 {
			lastJoin = i
		}
		if o.Set&kernel.SetAlias != 0 {
			firstAlias = min(firstAlias, i)
			aliases++
		}
	}
	if lastJoin < 0 || lastJoin > firstAlias {
		t.Errorf("a join (request %d) went after an alias (request %d): %v", lastJoin, firstAlias, order)
	}
	if aliases != 2+2*ports {
		t.Errorf("%d aliases written, want one per created link (%d)", aliases, 2+2*ports)
	}
	if k.aliasesOnUp != 0 {
		t.Errorf("%d aliases written on links already up, want 0 (each a NETDEV_CHANGE)", k.aliasesOnUp)
	}
	for name, l := range k.names() {
		if l.Group != DefaultOwnerGroup {
			continue
		}
		if !strings.HasPrefix(l.Alias, aliasPrefix) {
			t.Errorf("%s has no ownership alias: %q", name, l.Alias)
		}
		if l.Flags&iffUp == 0 {
			t.Errorf("%s is down", name)
		}
	}
	h.checkConsistent()
}
