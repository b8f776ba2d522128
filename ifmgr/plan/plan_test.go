package plan

import (
	"strings"
	"testing"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

const profileText = `
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

func profile(t *testing.T, text string) *board.Profile {
	t.Helper()
	p, err := board.Parse("test.toml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func eth(idx uint32, name, mac string) Link {
	return Link{Index: idx, Name: name, MAC: mac, PermMAC: mac, Up: true}
}

// owned builds the link ifmgr made for a target.
func owned(idx uint32, name string, id persist.Identity, parent uint32, vid uint16, master uint32) Link {
	kind := kernel.KindBridge
	if vid != 0 {
		kind = kernel.KindVLAN
	}
	return Link{Index: idx, Name: name, Kind: kind, Owned: true, Identity: id, ParentIndex: parent, VLANID: vid, Master: master}
}

var (
	lanBr   = BridgeIdentity("lan")
	guestBr = BridgeIdentity("guest")
	mac1    = "52:54:00:00:00:01"
	mac2    = "52:54:00:00:00:02"
	port1   = PortIdentity("lan", eth(0, "", mac1))
	port2   = PortIdentity("lan", eth(0, "", mac2))
)

// render makes a plan comparable: one line per action.
func render(pl Plan) string {
	var b strings.Builder
	for _, a := range pl.Actions {
		b.WriteString(a.Kind.String())
		b.WriteString(" ")
		switch a.Kind {
		case Create:
			b.WriteString(a.Target.Key())
			if a.Target.Master != "" {
				b.WriteString(" in " + a.Target.Master)
			}
		case SetMaster:
			b.WriteString(a.Name + " -> " + a.Master)
		default:
			b.WriteString(a.Name)
		}
		b.WriteString("\n")
	}
	return b.String()
}

// converged is the kernel after applying everything for eth0 (mac1).
func converged() []Link {
	return []Link{
		{Index: 1, Name: "lo"},
		{Index: 2, Name: "eth0", MAC: mac1, PermMAC: mac1, Master: 10, Up: true, Enslaved: true},
		owned(10, "bridge0", lanBr, 0, 0, 0),
		owned(11, "bridge1", guestBr, 0, 0, 0),
		owned(12, "vlan0", VLANIdentity(port1, 10), 2, 10, 11),
		owned(13, "vlan1", VLANIdentity(port1, 20), 2, 20, 0),
	}
}

func TestPlan(t *testing.T) {
	p := profile(t, profileText)
	cases := []struct {
		name    string
		profile *board.Profile
		links   []Link
		want    string
	}{
		{
			name:    "empty router: only the kept bridge",
			profile: p,
			links:   []Link{{Index: 1, Name: "lo"}},
			want:    "create " + guestBr.Key() + "\n",
		},
		{
			name:    "port appears",
			profile: p,
			links:   []Link{{Index: 1, Name: "lo"}, eth(2, "eth0", mac1), owned(11, "bridge1", guestBr, 0, 0, 0)},
			want: "create " + lanBr.Key() + "\n" +
				"create " + VLANIdentity(port1, 10).Key() + " in " + guestBr.Key() + "\n" +
				"create " + VLANIdentity(port1, 20).Key() + "\n" +
				"set-master eth0 -> " + lanBr.Key() + "\n",
		},
		{
			name:    "a port an operator set down stays down; a foreign link that is down is not touched",
			profile: p,
			links: func() []Link {
				l := append(converged(), Link{Index: 30, Name: "wan0"})
				l[1].Up = false
				return l
			}(),
			want: "",
		},
		{
			name:    "a port that is down is brought up when ifmgr takes it in",
			profile: p,
			links: func() []Link {
				l := append(converged(), Link{Index: 30, Name: "wan0"})
				l[1].Up, l[1].Master = false, 0
				return l
			}(),
			want: "bring-up eth0\nset-master eth0 -> " + lanBr.Key() + "\n",
		},
		{
			name:    "a port that appears down goes up before its VLANs are made",
			profile: p,
			links:   []Link{{Index: 2, Name: "eth0", MAC: mac1, PermMAC: mac1}, owned(10, "bridge0", lanBr, 0, 0, 0), owned(11, "bridge1", guestBr, 0, 0, 0)},
			want: "bring-up eth0\n" +
				"create " + VLANIdentity(port1, 10).Key() + " in " + guestBr.Key() + "\n" +
				"create " + VLANIdentity(port1, 20).Key() + "\n" +
				"set-master eth0 -> " + lanBr.Key() + "\n",
		},
		{
			name:    "converged: nothing to do",
			profile: p,
			links:   converged(),
			want:    "",
		},
		{
			name:    "port vanishes: the kernel took its VLANs, the empty bridge goes, the kept one stays",
			profile: p,
			links:   []Link{{Index: 1, Name: "lo"}, owned(10, "bridge0", lanBr, 0, 0, 0), owned(11, "bridge1", guestBr, 0, 0, 0)},
			want:    "delete bridge0\n",
		},
		{
			name:    "port re-appears with the same MAC under a new ifindex and name: same identities",
			profile: p,
			links:   []Link{{Index: 1, Name: "lo"}, eth(40, "eth7", mac1), owned(11, "bridge1", guestBr, 0, 0, 0)},
			want: "create " + lanBr.Key() + "\n" +
				"create " + VLANIdentity(port1, 10).Key() + " in " + guestBr.Key() + "\n" +
				"create " + VLANIdentity(port1, 20).Key() + "\n" +
				"set-master eth7 -> " + lanBr.Key() + "\n",
		},
		{
			name:    "port renamed out of the profile's globs: its VLANs go, it leaves the bridge",
			profile: p,
			links: func() []Link {
				l := converged()
				l[1].Name = "wan0"
				return l
			}(),
			want: "delete bridge0\ndelete vlan0\ndelete vlan1\n",
		},
		{
			name:    "two ports racing for one bridge: one create, two joins",
			profile: p,
			links:   []Link{eth(2, "eth0", mac1), eth(3, "eth1", mac2), owned(11, "bridge1", guestBr, 0, 0, 0)},
			want: "create " + lanBr.Key() + "\n" +
				"create " + VLANIdentity(port1, 10).Key() + " in " + guestBr.Key() + "\n" +
				"create " + VLANIdentity(port1, 20).Key() + "\n" +
				"create " + VLANIdentity(port2, 10).Key() + " in " + guestBr.Key() + "\n" +
				"create " + VLANIdentity(port2, 20).Key() + "\n" +
				"set-master eth0 -> " + lanBr.Key() + "\n" +
				"set-master eth1 -> " + lanBr.Key() + "\n",
		},
		{
			name:    "a link leaving the globs leaves a kept bridge too",
			profile: profile(t, strings.Replace(profileText, "[[bridge]]\nname = \"lan\"\n", "[[bridge]]\nname = \"lan\"\nkeep_empty = true\n", 1)),
			links: func() []Link {
				l := converged()
				l[1].Name = "wan0"
				return l
			}(),
			want: "delete vlan0\ndelete vlan1\nrelease wan0\n",
		},
		{
			name:    "VLAN id removed from the profile: only that VLAN goes",
			profile: profile(t, strings.Replace(profileText, "vlans = [10, 20]", "vlans = [10]", 1)),
			links:   converged(),
			want:    "delete vlan1\n",
		},
		{
			name:    "VLAN id added: only that VLAN is created",
			profile: profile(t, strings.Replace(profileText, "vlans = [10, 20]", "vlans = [10, 20, 30]", 1)),
			links:   converged(),
			want:    "create " + VLANIdentity(port1, 30).Key() + "\n",
		},
		{
			name:    "VLAN moved to another bridge: re-membered, not re-created",
			profile: profile(t, strings.Replace(profileText, "vlan_bridge = { 10 = \"guest\" }", "vlan_bridge = { 10 = \"lan\" }", 1)),
			links:   converged(),
			want:    "set-master vlan0 -> " + lanBr.Key() + "\n",
		},
		{
			name:    "port taken out of the bridge by the profile",
			profile: profile(t, strings.Replace(profileText, "bridge = \"lan\"\nvlans", "vlans", 1)),
			links:   converged(),
			want:    "delete bridge0\n",
		},
		{
			name:    "no profile: derived links go, ifctl-made and foreign links stay",
			profile: nil,
			links: append(converged(),
				owned(20, "bridge5", persist.Identity{Name: "bridge5"}, 0, 0, 0),
				Link{Index: 21, Name: "bridge6", Kind: "bridge"}),
			want: "delete bridge0\ndelete bridge1\ndelete vlan0\ndelete vlan1\n",
		},
		{
			name:    "a member ifmgr did not put in its bridge stays there (hostapd's wlan0, a VM's tap)",
			profile: p,
			links:   append(converged(), Link{Index: 30, Name: "tap0", Kind: "veth", Master: 10, Up: true}),
			want:    "",
		},
		{
			name:    "foreign links outside the globs are left alone",
			profile: p,
			links:   append(converged(), Link{Index: 30, Name: "br-foreign", Kind: "bridge"}, Link{Index: 31, Name: "vlan9", Kind: "vlan", ParentIndex: 2, VLANID: 99}),
			want:    "",
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := render(Compute(c.profile, c.links))
			if got != c.want {
				t.Errorf("plan:\n%s\nwant:\n%s", got, c.want)
			}
		})
	}
}

func TestPortIdentityPrefersPermanentMAC(t *testing.T) {
	l := Link{Name: "usb0", MAC: "02:00:00:00:00:01", PermMAC: mac1, Bus: "pci0000:00/0000:00:02.0"}
	if id := PortIdentity("lan", l); id.PermMAC != mac1 || id.BusPath != "" {
		t.Errorf("%+v", id)
	}
	l.PermMAC = ""
	if id := PortIdentity("lan", l); id.BusPath == "" || id.PermMAC != "" {
		t.Errorf("%+v", id)
	}
	if id := PortIdentity("lan", l); id.Link != l.Name || id.BusPath != l.Bus || id.PermMAC != "" {
		t.Errorf("no permanent MAC: %+v", id)
	}
	l.Bus = ""
	if id := PortIdentity("lan", l); id.Link != l.Name || id.PermMAC != "" || id.BusPath != "" {
		t.Errorf("virtual link: %+v", id)
	}
	l2 := l
	l2.MAC = "02:00:00:00:00:99"
	if PortIdentity("lan", l).Key() != PortIdentity("lan", l2).Key() {
		t.Error("a virtual link's identity follows its current MAC")
	}
	if Derived(persist.Identity{Name: "bridge3"}) || !Derived(lanBr) || !Derived(VLANIdentity(port1, 5)) {
		t.Error("Derived")
	}
}

func TestPerPortBridges(t *testing.T) {
	p := profile(t, `
board = "usb"
[[port]]
name = "usb"
match.name = "usb*"
bridge = "tether"
[[bridge]]
name = "tether"
per_port = true
`)
	u1, u2 := eth(5, "usb0", mac1), eth(6, "usb1", mac2)
	pl := Compute(p, []Link{u1, u2})
	b1 := PortBridgeIdentity("tether", PortIdentity("usb", u1))
	b2 := PortBridgeIdentity("tether", PortIdentity("usb", u2))
	want := "create " + b1.Key() + "\ncreate " + b2.Key() + "\nset-master usb0 -> " + b1.Key() + "\nset-master usb1 -> " + b2.Key() + "\n"
	if got := render(pl); got != want {
		t.Errorf("plan:\n%s\nwant:\n%s", got, want)
	}
	// One adapter goes: only its bridge goes.
	pl = Compute(p, []Link{u2, owned(20, "bridge0", b1, 0, 0, 0), owned(21, "bridge1", b2, 0, 0, 0)})
	if got := render(pl); got != "delete bridge0\nset-master usb1 -> "+b2.Key()+"\n" {
		t.Errorf("after unplug:\n%s", got)
	}
}
