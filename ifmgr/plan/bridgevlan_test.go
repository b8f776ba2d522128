package plan

import (
	"strings"
	"testing"

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
	self1   = SelfVLANIdentity(lanBr, 1)
	self10  = SelfVLANIdentity(lanBr, 10)
	tagged  = func(vid uint16) kernel.BridgeVLAN { return kernel.BridgeVLAN{VID: vid} }
	access  = func(vid uint16) kernel.BridgeVLAN { return kernel.BridgeVLAN{VID: vid, PVID: true, Untagged: true} }
	filters = kernel.BridgeOptions{VLANFiltering: true}
)

// filteringConverged is a router where everything filteringProfile asks
// for is in place: bridge0 filtering, eth0 and eth1 in it with their
// entries, the bridge's own VLANs 1 and 10 with their links.
func filteringConverged() []Link {
	br := owned(10, "bridge0", lanBr, 0, 0, 0)
	br.VLANFiltering = true
	br.BridgeVLANs = []kernel.BridgeVLAN{tagged(1), tagged(10)}
	return []Link{
		{Index: 1, Name: "lo"},
		{Index: 2, Name: "eth0", MAC: mac1, PermMAC: mac1, Master: 10, Up: true, Enslaved: true,
			BridgeVLANs: []kernel.BridgeVLAN{access(1), tagged(10), tagged(20)}},
		{Index: 3, Name: "eth1", MAC: mac2, PermMAC: mac2, Master: 10, Up: true, Enslaved: true,
			BridgeVLANs: []kernel.BridgeVLAN{access(10)}},
		br,
		owned(11, "vlan0", self1, 10, 1, 0),
		owned(12, "vlan1", self10, 10, 10, 0),
	}
}

func renderFull(pl Plan) string {
	var b strings.Builder
	for _, a := range pl.Actions {
		s := a.String()
		s = s[:strings.LastIndex(s, ":")] // the why is prose
		b.WriteString(s + "\n")
	}
	return b.String()
}

func TestPlanBridgeVLANs(t *testing.T) {
	p := profile(t, filteringProfile)
	with := func(f func(l []Link)) []Link { l := filteringConverged(); f(l); return l }
	cases := []struct {
		name  string
		links []Link
		want  string
	}{
		{
			name:  "converged: nothing to do",
			links: filteringConverged(),
			want:  "",
		},
		{
			name:  "first port: a filtering bridge, its own VLAN links on it, the port's entries and the bridge's own",
			links: []Link{{Index: 1, Name: "lo"}, eth(2, "eth0", mac1)},
			want: "create bridge " + lanBr.Key() + "\n" +
				"create vlan " + self1.Key() + "\n" +
				"create vlan " + self10.Key() + "\n" +
				"set-master eth0 -> " + lanBr.Key() + "\n" +
				"vlan-add eth0 vid 1 pvid untagged\n" +
				"vlan-add eth0 vid 10 tagged\n" +
				"vlan-add eth0 vid 20 tagged\n" +
				"vlan-add " + lanBr.Key() + " self vid 1 tagged\n" +
				"vlan-add " + lanBr.Key() + " self vid 10 tagged\n",
		},
		{
			name: "replug: the port is back with a new ifindex and no entries; exactly its entries are added",
			links: with(func(l []Link) {
				l[1] = Link{Index: 20, Name: "eth0", MAC: mac1, PermMAC: mac1, Up: true}
			}),
			want: "set-master eth0 -> " + lanBr.Key() + "\n" +
				"vlan-add eth0 vid 1 pvid untagged\n" +
				"vlan-add eth0 vid 10 tagged\n" +
				"vlan-add eth0 vid 20 tagged\n",
		},
		{
			name: "one entry deleted behind ifmgr's back: only it comes back",
			links: with(func(l []Link) {
				l[1].BridgeVLANs = []kernel.BridgeVLAN{access(1), tagged(20)}
			}),
			want: "vlan-add eth0 vid 10 tagged\n",
		},
		{
			name: "an entry added behind ifmgr's back, a flag changed, the bridge's own side too",
			links: with(func(l []Link) {
				l[2].BridgeVLANs = []kernel.BridgeVLAN{tagged(10), tagged(30)}
				l[3].BridgeVLANs = []kernel.BridgeVLAN{tagged(1), tagged(10), access(99)}
			}),
			want: "vlan-add eth1 vid 10 pvid untagged\n" +
				"vlan-del eth1 vid 30\n" +
				"vlan-del bridge0 self vid 99\n",
		},
		{
			name: "filtering turned off behind ifmgr's back",
			links: with(func(l []Link) {
				l[3].VLANFiltering = false
			}),
			want: "set-filtering bridge0 on (default pvid 0)\n",
		},
		{
			name: "default PVID set behind ifmgr's back",
			links: with(func(l []Link) {
				l[3].DefaultPVID = 1
			}),
			want: "set-filtering bridge0 on (default pvid 0)\n",
		},
		{
			name: "a foreign member of the bridge keeps its membership",
			links: append(filteringConverged(), Link{Index: 40, Name: "wlan0", Master: 10, Up: true,
				BridgeVLANs: []kernel.BridgeVLAN{access(1), tagged(4000)}}),
			want: "",
		},
		{
			name: "a port not yet in its bridge (join first, then entries; no delete of entries it loses by moving)",
			links: with(func(l []Link) {
				l[2].Master, l[2].BridgeVLANs = 0, []kernel.BridgeVLAN{access(1)}
			}),
			want: "set-master eth1 -> " + lanBr.Key() + "\n" +
				"vlan-add eth1 vid 10 pvid untagged\n",
		},
		{
			name: "a self VLAN link on the wrong bridge is made again",
			links: with(func(l []Link) {
				l[5].ParentIndex = 99
			}),
			want: "delete vlan1\ncreate vlan " + self10.Key() + "\n",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := renderFull(Compute(p, c.links))
			if got != c.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

// A self VLAN's target sits on the bridge: by ifindex when the bridge
// exists, by identity key (resolved by the applier) when this plan makes it.
func TestSelfVLANTarget(t *testing.T) {
	p := profile(t, filteringProfile)
	pl := Compute(p, []Link{eth(2, "eth0", mac1)})
	if tg := pl.Targets[self10.Key()]; tg.ParentBridge != lanBr.Key() || tg.ParentIndex != 0 || tg.VID != 10 {
		t.Errorf("self VLAN target before the bridge: %+v", tg)
	}
	if tg := pl.Targets[lanBr.Key()]; tg.Options != filters {
		t.Errorf("bridge target options %+v, want %+v", tg.Options, filters)
	}
	pl = Compute(p, filteringConverged())
	if tg := pl.Targets[self10.Key()]; tg.ParentBridge != lanBr.Key() || tg.ParentIndex != 10 {
		t.Errorf("self VLAN target on bridge0: %+v", tg)
	}
}

// A reload that changes one port's VLANs plans actions on that port only.
func TestPlanReloadTouchesOnePort(t *testing.T) {
	changed := profile(t, strings.Replace(filteringProfile, "tagged = [10, 20]", "tagged = [10, 30]", 1))
	got := renderFull(Compute(changed, filteringConverged()))
	want := "vlan-add eth0 vid 30 tagged\nvlan-del eth0 vid 20\n"
	if got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	for _, a := range Compute(changed, filteringConverged()).Actions {
		if a.Link != 2 {
			t.Errorf("action on another link than eth0: %v", a)
		}
	}
}
