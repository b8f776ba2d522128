package kernel

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// needBridgeVLANFiltering skips t when the kernel has no bridge VLAN
// filtering (CONFIG_BRIDGE_VLAN_FILTERING; the CI host's has none): a
// bridge created with IFLA_BR_VLAN_FILTERING is refused with EOPNOTSUPP.
// Such a test runs in the QEMU guests (qemu-test TestGuestKernelTests),
// whose report fails on any skip.
func needBridgeVLANFiltering(t *testing.T, c *Conn) {
	t.Helper()
	l, err := c.CreateBridgeWith("tvfprobe", 1, BridgeOptions{VLANFiltering: true})
	switch {
	case err == nil:
		_ = c.Delete(l.Index)
		if !l.VLANFiltering {
			t.Fatalf("probe bridge created with filtering reads back %+v", l)
		}
	case errors.Is(err, unix.EOPNOTSUPP):
		t.Skipf("no bridge VLAN filtering in this kernel (%v): runs inside the QEMU guests (qemu-test/README.md, the kernel tests inside the guests)", err)
	default:
		t.Fatalf("probe for bridge VLAN filtering: %v", err)
	}
}

// portVLANs is the membership BridgeVLANs reports for index, and whether
// the dump has the index at all.
func portVLANs(t *testing.T, c *Conn, index uint32) ([]BridgeVLAN, bool) {
	t.Helper()
	all, err := c.BridgeVLANs()
	if err != nil {
		t.Fatal(err)
	}
	v, ok := all[index]
	return v, ok
}

func wantVLANs(t *testing.T, c *Conn, what string, index uint32, want ...BridgeVLAN) {
	t.Helper()
	got, ok := portVLANs(t, c, index)
	if !ok {
		t.Fatalf("%s: link %d not in the bridge VLAN dump", what, index)
	}
	if want == nil {
		want = []BridgeVLAN{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: link %d has %v, want %v", what, index, got, want)
	}
}

// TestBridgeVLANFilteringOptions creates filtering bridges and reads their
// settings back from the kernel (the create's reply, a get and a dump,
// through our decoder), then changes them behind and in front of ifmgr.
func TestBridgeVLANFilteringOptions(t *testing.T) {
	c := dial(t)
	needBridgeVLANFiltering(t, c)
	deleteLater(t, c, "tvf0")
	deleteLater(t, c, "tvf10")
	deleteLater(t, c, "tvfplain")

	check := func(what, name string, want BridgeOptions) Link {
		t.Helper()
		got := mustLink(t, c, name)
		links, err := c.Links()
		if err != nil {
			t.Fatal(err)
		}
		dumped, _ := find(links, name)
		for how, l := range map[string]Link{"get": got, "dump": dumped} {
			if l.Kind != KindBridge || l.VLANFiltering != want.VLANFiltering || l.DefaultPVID != want.DefaultPVID {
				t.Fatalf("%s: %s of %s: kind %q filtering %v default pvid %d, want %s",
					what, how, name, l.Kind, l.VLANFiltering, l.DefaultPVID, want)
			}
		}
		return got
	}

	// Filtering, no default PVID: the bridge's own side has no VLAN.
	opt := BridgeOptions{VLANFiltering: true}
	br, err := c.CreateBridgeWith("tvf0", 6, opt)
	if err != nil {
		t.Fatal(err)
	}
	if !br.VLANFiltering || br.DefaultPVID != 0 || br.Group != 6 || br.Flags&unix.IFF_UP == 0 {
		t.Fatalf("created %+v, want filtering, default pvid 0, group 6, up", br)
	}
	check("created", "tvf0", opt)
	wantVLANs(t, c, "new bridge, default pvid 0", br.Index)

	// Filtering with default PVID 10: the kernel puts the bridge itself in
	// VLAN 10, PVID and untagged.
	b10, err := c.CreateBridgeWith("tvf10", 6, BridgeOptions{VLANFiltering: true, DefaultPVID: 10})
	if err != nil {
		t.Fatal(err)
	}
	check("created", "tvf10", BridgeOptions{VLANFiltering: true, DefaultPVID: 10})
	wantVLANs(t, c, "new bridge, default pvid 10", b10.Index, BridgeVLAN{VID: 10, PVID: true, Untagged: true})

	// A plain bridge: the kernel's defaults (default PVID 1).
	plain, err := c.CreateBridge("tvfplain", 6)
	if err != nil {
		t.Fatal(err)
	}
	check("plain", "tvfplain", BridgeOptions{DefaultPVID: 1})

	// Drift: another socket turns filtering off; SetBridgeOptions repairs.
	other := dial(t)
	if err := other.SetBridgeOptions(br.Index, BridgeOptions{}); err != nil {
		t.Fatal(err)
	}
	check("turned off behind our back", "tvf0", BridgeOptions{})
	if err := c.SetBridgeOptions(br.Index, opt); err != nil {
		t.Fatal(err)
	}
	check("repaired", "tvf0", opt)
	// Setting what is already there is no error.
	if err := c.SetBridgeOptions(br.Index, opt); err != nil {
		t.Fatalf("same options again: %v", err)
	}
	check("same again", "tvf0", opt)
	// Filtering on a plain bridge, and its default PVID to none.
	if err := c.SetBridgeOptions(plain.Index, opt); err != nil {
		t.Fatal(err)
	}
	check("plain made filtering", "tvfplain", opt)
	// Another default PVID on a filtering bridge.
	err = c.SetBridgeOptions(b10.Index, BridgeOptions{VLANFiltering: true, DefaultPVID: 20})
	t.Logf("default pvid 10 -> 20 while filtering: %v", err)
	if err != nil {
		t.Fatal(err)
	}
	check("default pvid changed", "tvf10", BridgeOptions{VLANFiltering: true, DefaultPVID: 20})

	// Not a bridge, and a gone link.
	createVeth(t, c, "tvfv0", "tvfv1", 0)
	v := mustLink(t, c, "tvfv0")
	if err := c.SetBridgeOptions(v.Index, opt); err == nil {
		t.Fatal("bridge options set on a veth")
	} else {
		t.Logf("bridge options on a veth: %v", err)
	}
	if err := c.Delete(b10.Index); err != nil {
		t.Fatal(err)
	}
	if err := c.SetBridgeOptions(b10.Index, opt); !errors.Is(err, ErrNotFound) {
		t.Fatalf("options of a deleted bridge: %v", err)
	}
	// The name is taken.
	if _, err := c.CreateBridgeWith("tvf0", 6, opt); !errors.Is(err, ErrExists) {
		t.Fatalf("second tvf0: %v", err)
	}
}

// TestBridgeVLANMembership changes port and self membership on a filtering
// bridge and reads it back from the kernel with BridgeVLANs: flags, PVID
// moves, idempotent adds and deletes, and the refusals.
func TestBridgeVLANMembership(t *testing.T) {
	c := dial(t)
	needBridgeVLANFiltering(t, c)
	deleteLater(t, c, "tvm0")
	deleteLater(t, c, "tvma")
	deleteLater(t, c, "tvmc")
	br, err := c.CreateBridgeWith("tvm0", 1, BridgeOptions{VLANFiltering: true})
	if err != nil {
		t.Fatal(err)
	}
	createVeth(t, c, "tvma", "tvmb", 0)
	createVeth(t, c, "tvmc", "tvmd", 0)
	a, b, cport := mustLink(t, c, "tvma"), mustLink(t, c, "tvmb"), mustLink(t, c, "tvmc")
	for _, p := range []Link{a, cport} {
		if err := c.SetMaster(p.Index, br.Index); err != nil {
			t.Fatal(err)
		}
	}
	// Default PVID 0: a new port is a member of nothing; a link that is not
	// a port is not in the dump.
	wantVLANs(t, c, "new port", a.Index)
	wantVLANs(t, c, "bridge", br.Index)
	if v, ok := portVLANs(t, c, b.Index); ok {
		t.Fatalf("veth outside the bridge in the dump: %v", v)
	}

	access := BridgeVLAN{VID: 10, PVID: true, Untagged: true}
	for _, step := range []struct {
		index uint32
		self  bool
		v     BridgeVLAN
	}{
		{a.Index, false, access},
		{a.Index, false, BridgeVLAN{VID: 20}},
		{a.Index, false, BridgeVLAN{VID: 4094}},
		{a.Index, false, BridgeVLAN{VID: 1}},
		{cport.Index, false, BridgeVLAN{VID: 20, Untagged: true}},
		{br.Index, true, BridgeVLAN{VID: 10}},
	} {
		if err := c.AddBridgeVLAN(step.index, step.self, step.v); err != nil {
			t.Fatal(err)
		}
	}
	wantA := []BridgeVLAN{{VID: 1}, access, {VID: 20}, {VID: 4094}}
	wantVLANs(t, c, "port a", a.Index, wantA...)
	wantVLANs(t, c, "port c", cport.Index, BridgeVLAN{VID: 20, Untagged: true})
	wantVLANs(t, c, "bridge self", br.Index, BridgeVLAN{VID: 10})

	// Idempotent: the same entries again change nothing.
	if err := c.AddBridgeVLAN(a.Index, false, access); err != nil {
		t.Fatalf("existing entry again: %v", err)
	}
	if err := c.AddBridgeVLAN(br.Index, true, BridgeVLAN{VID: 10}); err != nil {
		t.Fatalf("existing self entry again: %v", err)
	}
	wantVLANs(t, c, "port a after re-adds", a.Index, wantA...)
	wantVLANs(t, c, "bridge self after re-adds", br.Index, BridgeVLAN{VID: 10})

	// Other flags on an existing entry replace them; PVID moves (a port has
	// one).
	if err := c.AddBridgeVLAN(a.Index, false, BridgeVLAN{VID: 20, PVID: true}); err != nil {
		t.Fatal(err)
	}
	wantVLANs(t, c, "pvid moved to 20", a.Index, BridgeVLAN{VID: 1}, BridgeVLAN{VID: 10, Untagged: true}, BridgeVLAN{VID: 20, PVID: true}, BridgeVLAN{VID: 4094})
	if err := c.AddBridgeVLAN(a.Index, false, BridgeVLAN{VID: 10}); err != nil {
		t.Fatal(err)
	}
	wantVLANs(t, c, "10 made tagged", a.Index, BridgeVLAN{VID: 1}, BridgeVLAN{VID: 10}, BridgeVLAN{VID: 20, PVID: true}, BridgeVLAN{VID: 4094})

	// Deletes, twice each.
	for range 2 {
		if err := c.DelBridgeVLAN(a.Index, false, 4094); err != nil {
			t.Fatalf("delete port vlan: %v", err)
		}
		if err := c.DelBridgeVLAN(br.Index, true, 10); err != nil {
			t.Fatalf("delete self vlan: %v", err)
		}
	}
	wantVLANs(t, c, "after deletes", a.Index, BridgeVLAN{VID: 1}, BridgeVLAN{VID: 10}, BridgeVLAN{VID: 20, PVID: true})
	wantVLANs(t, c, "bridge self after delete", br.Index)
	// Deleting one never added is no error either.
	if err := c.DelBridgeVLAN(cport.Index, false, 3000); err != nil {
		t.Fatalf("delete a vlan never added: %v", err)
	}
	wantVLANs(t, c, "port c untouched", cport.Index, BridgeVLAN{VID: 20, Untagged: true})

	// Refusals: a link that is no port (the kernel says why), a gone link.
	err = c.AddBridgeVLAN(b.Index, false, BridgeVLAN{VID: 5})
	if err == nil {
		t.Fatal("vlan added to a link outside any bridge")
	}
	t.Logf("vlan on a link outside any bridge: %v", err)
	if err := c.AddBridgeVLAN(999999, false, BridgeVLAN{VID: 5}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("vlan on a missing link: %v", err)
	}
	if err := c.AddBridgeVLAN(999999, true, BridgeVLAN{VID: 5}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("self vlan on a missing link: %v", err)
	}

	// Released, a port leaves the dump with its membership.
	if err := c.SetMaster(cport.Index, 0); err != nil {
		t.Fatal(err)
	}
	if v, ok := portVLANs(t, c, cport.Index); ok {
		t.Fatalf("released port still in the dump: %v", v)
	}
}

// TestWatchBridgeVLANEvents: a membership change made by another socket
// (behind the watching Conn's back) arrives as EventVLAN naming the port or
// the bridge, and the AF_BRIDGE messages behind it never as EventNew or
// EventDel.
func TestWatchBridgeVLANEvents(t *testing.T) {
	c := dial(t)
	needBridgeVLANFiltering(t, c)
	w := watch(t, WatchOptions{})
	p := startPump(w)
	deleteLater(t, c, "twvb0")
	deleteLater(t, c, "twva")
	br, err := c.CreateBridgeWith("twvb0", 1, BridgeOptions{VLANFiltering: true})
	if err != nil {
		t.Fatal(err)
	}
	createVeth(t, c, "twva", "twvb", 0)
	port := mustLink(t, c, "twva")
	if err := c.SetMaster(port.Index, br.Index); err != nil {
		t.Fatal(err)
	}
	// Joining is a membership change too (AF_BRIDGE RTM_NEWLINK); the
	// master change itself is an EventNew (AF_UNSPEC, IFLA_MASTER).
	p.await(t, "twva enslaved", func(ev Event) bool {
		return ev.Type == EventNew && ev.Link.Index == port.Index && ev.Link.Master == br.Index
	})

	other := dial(t)
	seq := 0
	change := func(what string, index uint32, fn func() error) {
		t.Helper()
		seq++
		if err := fn(); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		// A marker link after the change: its EventNew comes after every
		// event of the change, so nothing of the change is left unseen.
		marker := fmt.Sprintf("twvm%d", seq)
		createVeth(t, c, marker, marker+"p", 0)
		var vlan bool
		p.await(t, what, func(ev Event) bool {
			mine := ev.Link.Index == port.Index || ev.Link.Index == br.Index
			switch {
			case ev.Type == EventResync:
				t.Errorf("%s: unexpected resync: %s", what, ev.Reason)
			case ev.Type == EventVLAN && ev.Link.Index == index:
				vlan = true
				if ev.Link.Kind != "" {
					t.Errorf("%s: EventVLAN %+v carries a kind: not from an AF_BRIDGE message", what, ev.Link)
				}
			case mine && (ev.Type == EventNew || ev.Type == EventDel) && ev.Link.Kind == "":
				// The port's and the bridge's own link-state messages
				// (AF_UNSPEC, which the kernel may still send after the
				// port joined: operstate, features) always carry
				// IFLA_LINKINFO; AF_BRIDGE ones never do.
				t.Errorf("%s: %v event for link %d without a kind: an AF_BRIDGE message was taken for link state (%+v)", what, ev.Type, ev.Link.Index, ev.Link)
			}
			return ev.Type == EventNew && ev.Link.Name == marker
		})
		if !vlan {
			t.Errorf("%s: no EventVLAN for link %d before the marker", what, index)
		}
	}
	change("port vlan added", port.Index, func() error {
		return other.AddBridgeVLAN(port.Index, false, BridgeVLAN{VID: 30, PVID: true, Untagged: true})
	})
	change("port vlan flags changed", port.Index, func() error {
		return other.AddBridgeVLAN(port.Index, false, BridgeVLAN{VID: 30})
	})
	change("port vlan deleted", port.Index, func() error { return other.DelBridgeVLAN(port.Index, false, 30) })
	change("self vlan added", br.Index, func() error { return other.AddBridgeVLAN(br.Index, true, BridgeVLAN{VID: 30}) })
	change("self vlan deleted", br.Index, func() error { return other.DelBridgeVLAN(br.Index, true, 30) })
}

// TestBridgeVLANsDumpPlain dumps the membership of a plain bridge, which
// every kernel can (the host's too): the bridge and its port have keys, a
// link outside the bridge has none. Where the kernel has VLAN filtering (the
// bridge reports a default PVID, 1), both are members of VLAN 1, PVID and
// untagged, as the kernel sets up every bridge and port; without it, of
// nothing.
func TestBridgeVLANsDumpPlain(t *testing.T) {
	c := dial(t)
	deleteLater(t, c, "tvdp0")
	deleteLater(t, c, "tvdpa")
	br, err := c.CreateBridge("tvdp0", 1)
	if err != nil {
		t.Fatal(err)
	}
	createVeth(t, c, "tvdpa", "tvdpb", 0)
	a, b := mustLink(t, c, "tvdpa"), mustLink(t, c, "tvdpb")
	if err := c.SetMaster(a.Index, br.Index); err != nil {
		t.Fatal(err)
	}
	var want []BridgeVLAN
	if br.DefaultPVID == 1 {
		want = []BridgeVLAN{{VID: 1, PVID: true, Untagged: true}}
	} else if br.DefaultPVID != 0 {
		t.Fatalf("plain bridge reports default pvid %d", br.DefaultPVID)
	}
	t.Logf("default pvid %d: want %v for the bridge and its port", br.DefaultPVID, want)
	wantVLANs(t, c, "plain bridge", br.Index, want...)
	wantVLANs(t, c, "port of a plain bridge", a.Index, want...)
	if v, ok := portVLANs(t, c, b.Index); ok {
		t.Fatalf("link outside any bridge in the dump: %v", v)
	}
}
