package board

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

type linkWant struct {
	link LinkFacts
	rule string // "" for no port
}

// Plausible links of each shipped profile's board, and the rule each must
// match. Every file in profiles/ must have an entry.
var profileLinks = map[string][]linkWant{
	"qemu-amd64.toml":              qemuLinks("pci0000:00/0000:00:02.0/virtio0", "pci0000:00/0000:00:03.0/virtio1"),
	"qemu-arm64.toml":              qemuLinks("platform/4010000000.pcie/pci0000:00/0000:00:01.0/virtio0", "platform/a003e00.virtio_mmio/virtio1"),
	"qemu-armv7.toml":              qemuLinks("platform/3f000000.pcie/pci0000:00/0000:00:01.0/virtio0", "platform/a003c00.virtio_mmio/virtio1"),
	"qemu-mipsle.toml":             qemuLinks("pci0000:00/0000:00:12.0/virtio0", "pci0000:00/0000:00:13.0/virtio1"),
	"ubnt-edgerouter-x.toml":       erxLinks,
	"ubnt-edgerouter-x-8021q.toml": erxLinks,
	"bananapi-bpi-r3.toml":         bpiR3Links,
	"bananapi-bpi-r3-8021q.toml":   bpiR3Links,
}

// The real boards' links; each board's two profiles (VLAN-filtering and
// 802.1Q per port) match them alike.
var (
	erxLinks = []linkWant{
		{LinkFacts{Name: "eth0", PermMAC: "", Driver: "mt7530-mdio", Bus: "platform/1e100000.ethernet/mdio_bus/mdio-bus/mdio-bus:1f"}, "wan"},
		{LinkFacts{Name: "eth0", Driver: "mtk_soc_eth", Bus: "platform/1e100000.ethernet"}, "wan"}, // the gmac1 variant
		{LinkFacts{Name: "eth1", Driver: "mt7530-mdio", Bus: "platform/1e100000.ethernet/mdio_bus/mdio-bus/mdio-bus:1f"}, "lan"},
		{LinkFacts{Name: "eth4", Driver: "mt7530", Bus: "platform/1e100000.ethernet/mdio_bus/mdio-bus/mdio-bus:1f"}, "lan"},
		{LinkFacts{Name: "dsa", Driver: "mtk_soc_eth", Bus: "platform/1e100000.ethernet"}, ""}, // the conduit
		{LinkFacts{Name: "eth5", Driver: "mt7530-mdio"}, ""},
		{LinkFacts{Name: "wlan0", Driver: "mt7603e"}, ""},
	}
	bpiR3Links = []linkWant{
		{LinkFacts{Name: "wan", Driver: "mt7530-mdio", Bus: "platform/soc/15100000.ethernet/mdio_bus/mdio-bus/mdio-bus:1f"}, "wan"},
		{LinkFacts{Name: "eth1", Driver: "mtk_soc_eth", Bus: "platform/soc/15100000.ethernet"}, "wan-sfp"},
		{LinkFacts{Name: "lan0", Driver: "mt7530-mdio", Bus: "platform/soc/15100000.ethernet/mdio_bus/mdio-bus/mdio-bus:1f"}, "lan"},
		{LinkFacts{Name: "lan4", Driver: "mt7530-mdio", Bus: "platform/soc/15100000.ethernet/mdio_bus/mdio-bus/mdio-bus:1f"}, "lan"},
		{LinkFacts{Name: "eth0", Driver: "mtk_soc_eth", Bus: "platform/soc/15100000.ethernet"}, ""}, // the conduit
		{LinkFacts{Name: "lan5", Driver: "mt7530-mdio"}, ""},
		{LinkFacts{Name: "wan", Driver: ""}, ""}, // a virtual link of that name
	}
)

func qemuLinks(bus0, bus1 string) []linkWant {
	return []linkWant{
		{LinkFacts{Name: "eth0", PermMAC: "52:54:00:12:34:56", Driver: "virtio_net", Bus: bus0}, "lan"},
		{LinkFacts{Name: "eth1", PermMAC: "52:54:00:12:34:57", Driver: "virtio_net", Bus: bus1}, "lan"},
		{LinkFacts{Name: "eth2", PermMAC: "02:00:00:00:00:01", Driver: "virtio_net"}, "lan"},
		{LinkFacts{Name: "eth3", PermMAC: "52:54:00:12:34:58", Driver: "e1000e"}, ""}, // QEMU's default model
		{LinkFacts{Name: "eth4", Driver: "pcnet32"}, ""},
		{LinkFacts{Name: "eth5"}, ""}, // virtual: no driver
		{LinkFacts{Name: "bridge0"}, ""},
		{LinkFacts{Name: "lo"}, ""},
	}
}

func TestShippedProfiles(t *testing.T) {
	files, err := filepath.Glob("profiles/*.toml")
	if err != nil || len(files) < 8 {
		t.Fatalf("profiles: %v %v", files, err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		t.Run(base, func(t *testing.T) {
			p, err := Load(f)
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if want := strings.TrimSuffix(base, ".toml"); p.Board != want {
				t.Errorf("board = %q, want the file's name %q", p.Board, want)
			}
			if !strings.HasPrefix(string(mustRead(t, f)), "# ") {
				t.Error("no header comment")
			}
			// Every shipped board: LAN ports in "lan", kept when empty,
			// and a guest network on VLAN 10: either the filtering
			// bridge's VLAN 10 (tagged on the LAN ports, one of the
			// router's own VLANs) or each port's 802.1Q VLAN 10 in bridge
			// "guest".
			lan, ok := p.Bridge("lan")
			if !ok || !lan.KeepEmpty {
				t.Fatalf("bridge lan = %+v, %v; want keep_empty", lan, ok)
			}
			lp, ok := p.Port("lan")
			switch {
			case !ok || lp.Bridge != "lan":
				t.Errorf("port lan = %+v", lp)
			case lan.VLANFiltering:
				if !slices.Contains(lan.SelfVLANs, 10) || lp.BridgeVLAN == nil || !slices.Contains(lp.BridgeVLAN.Tagged, 10) {
					t.Errorf("filtering bridge lan: self VLANs %v, port lan's membership %+v; want VLAN 10 the router's and tagged on the LAN ports", lan.SelfVLANs, lp.BridgeVLAN)
				}
			default:
				if _, ok := p.Bridge("guest"); !ok {
					t.Error("no bridge guest")
				}
				if lp.VLANBridge[10] != "guest" {
					t.Errorf("port lan = %+v; want VLAN 10 in bridge guest", lp)
				}
			}
			links, ok := profileLinks[base]
			if !ok {
				t.Fatalf("no links to match in profileLinks for %s", base)
			}
			for _, lw := range links {
				r, ok := p.MatchPort(lw.link)
				got := ""
				if ok {
					got = r.Name
				}
				if got != lw.rule {
					t.Errorf("MatchPort(%+v) = %q, want %q", lw.link, got, lw.rule)
				}
			}
			// Re-parsing the same bytes gives an Equal profile.
			q, err := Parse("other-name", mustRead(t, f))
			if err != nil || !p.Equal(q) {
				t.Errorf("re-parse: Equal = false, err %v", err)
			}
		})
	}
	for name := range profileLinks {
		if _, err := os.Stat("profiles/" + name); err != nil {
			t.Errorf("profileLinks names a missing profile: %v", err)
		}
	}
}

// The QEMU profiles are one design: identical but for the header comment
// and the board name.
func TestQEMUProfilesAgree(t *testing.T) {
	var first *Profile
	for _, f := range []string{"qemu-amd64", "qemu-arm64", "qemu-armv7", "qemu-mipsle"} {
		p, err := Load("profiles/" + f + ".toml")
		if err != nil {
			t.Fatal(err)
		}
		if p.Ports[0].VLANs[0] != 10 || p.Ports[0].VLANs[1] != 20 || len(p.Ports[0].VLANBridge) != 1 {
			t.Errorf("%s: VLANs %v %v: want 10 in guest, 20 standalone", f, p.Ports[0].VLANs, p.Ports[0].VLANBridge)
		}
		p.Board = ""
		if first == nil {
			first = p
		} else if !first.Equal(p) {
			t.Errorf("%s differs from qemu-amd64", f)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
