package board

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mustParse(t *testing.T, doc string) *Profile {
	t.Helper()
	p, err := Parse("m.toml", []byte(doc))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return p
}

func TestMatchPort(t *testing.T) {
	p := mustParse(t, `board = "m"
[[port]]
name = "by-name"
match.name = ["lan[1-4]", "port?"]

[[port]]
name = "by-mac"
match.mac = "02:AA:BB:*"          # upper case in the file

[[port]]
name = "by-driver"
match.driver = ["igb", "e1000*"]

[[port]]
name = "by-bus"
match.bus = ["pci0000:00/0000:00:1c.*"]

[[port]]
name = "all-of"
match.name = "eth*"
match.driver = "virtio_net"
match.mac = ["52:54:00:*"]

[[port]]
name = "catch-eth"
match.name = "eth*"
`)
	tests := []struct {
		name string
		link LinkFacts
		want string
	}{
		{"name glob", LinkFacts{Name: "lan3"}, "by-name"},
		{"name second glob", LinkFacts{Name: "port7"}, "by-name"},
		{"name class miss", LinkFacts{Name: "lan5"}, ""},
		{"mac lower", LinkFacts{Name: "x", PermMAC: "02:aa:bb:01:02:03"}, "by-mac"},
		{"mac upper", LinkFacts{Name: "x", PermMAC: "02:AA:BB:01:02:03"}, "by-mac"},
		{"mac miss", LinkFacts{Name: "x", PermMAC: "02:aa:bc:01:02:03"}, ""},
		{"driver", LinkFacts{Name: "x", Driver: "e1000e"}, "by-driver"},
		{"driver exact", LinkFacts{Name: "x", Driver: "igb"}, "by-driver"},
		{"driver miss", LinkFacts{Name: "x", Driver: "igbvf"}, ""},
		{"bus exact", LinkFacts{Name: "x", Bus: "pci0000:00/0000:00:1c.0"}, "by-bus"},
		{"bus below", LinkFacts{Name: "x", Bus: "pci0000:00/0000:00:1c.4/0000:02:00.0"}, "by-bus"},
		{"bus above", LinkFacts{Name: "x", Bus: "pci0000:00"}, ""},
		{"bus sibling", LinkFacts{Name: "x", Bus: "pci0000:00/0000:00:1d.0/0000:02:00.0"}, ""},
		{"all given match", LinkFacts{Name: "eth0", PermMAC: "52:54:00:00:00:01", Driver: "virtio_net"}, "all-of"},
		{"one of all misses: first rule skipped, next wins", LinkFacts{Name: "eth0", PermMAC: "52:54:00:00:00:01", Driver: "e1000"}, "by-driver"},
		{"given but empty in link", LinkFacts{Name: "eth0", Driver: "virtio_net"}, "catch-eth"},
		{"first rule wins", LinkFacts{Name: "lan1", Driver: "igb", PermMAC: "02:aa:bb:00:00:00"}, "by-name"},
		{"later rule when earlier miss", LinkFacts{Name: "eth9"}, "catch-eth"},
		{"nothing", LinkFacts{Name: "wlan0"}, ""},
		{"empty link", LinkFacts{}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, ok := p.MatchPort(tt.link)
			got := ""
			if ok {
				got = r.Name
				if r != &p.Ports[indexOf(p, got)] {
					t.Error("MatchPort did not return a pointer into p.Ports")
				}
			} else if r != nil {
				t.Error("no match but non-nil rule")
			}
			if got != tt.want {
				t.Errorf("MatchPort(%+v) = %q, want %q", tt.link, got, tt.want)
			}
		})
	}
	// "*" still needs the field to be there.
	star := mustParse(t, "board = \"s\"\n[[port]]\nname = \"any\"\nmatch.driver = \"*\"\n")
	if _, ok := star.MatchPort(LinkFacts{Name: "veth0"}); ok {
		t.Error(`driver "*" matched a link without a driver`)
	}
	if _, ok := star.MatchPort(LinkFacts{Name: "eth0", Driver: "r8169"}); !ok {
		t.Error(`driver "*" did not match a link with a driver`)
	}
	var zero Match
	if zero.Matches(LinkFacts{Name: "eth0", Driver: "x"}) {
		t.Error("an empty Match matched")
	}
}

func indexOf(p *Profile, name string) int {
	for i := range p.Ports {
		if p.Ports[i].Name == name {
			return i
		}
	}
	return -1
}

const equalA = `# Board A
board = "a"
[cloners.bridge]
template = "br%d"

[[port]]
name = "lan"
match.name = ["eth*", "lan*"]
bridge = "lan"
vlans = [10, 20]
vlan_bridge = { 10 = "guest" }

[[port]]
name = "wan"
match.name = "wan"

[[bridge]]
name = "lan"
keep_empty = true
[[bridge]]
name = "guest"
`

// The same profile: other comments, whitespace, key order, inline vs dotted
// keys, set orders, bridges reordered.
const equalB = `board="a"   # same board, said differently


[[port]]
vlans = [ 20, 10 ]     # order of ids is not meaning
name = "lan"
bridge = "lan"
  [port.match]
  name = [ "lan*", "eth*" ]
  [port.vlan_bridge]
  10 = "guest"
[[port]]
name = "wan"
match = { name = ["wan"] }
[[bridge]]
name = "guest"
keep_empty = false
[[bridge]]
name = "lan"
keep_empty = true

[cloners.bridge]
template = "br%d"
max = 32767
`

func TestEqual(t *testing.T) {
	a, b := mustParse(t, equalA), mustParse(t, equalB)
	if !a.Equal(b) || !b.Equal(a) {
		t.Fatalf("reformatted profile not Equal:\n%+v\n%+v", a, b)
	}
	if a.Ports[0].Line == b.Ports[0].Line {
		t.Fatal("test is weak: lines should differ")
	}
	changes := map[string]string{
		"vlan id":          strings.Replace(equalA, "vlans = [10, 20]", "vlans = [10, 30]", 1),
		"vlan added":       strings.Replace(equalA, "vlans = [10, 20]", "vlans = [10, 20, 30]", 1),
		"vlan bridge":      strings.Replace(equalA, "vlan_bridge = { 10 = \"guest\" }", "vlan_bridge = { 10 = \"lan\" }", 1),
		"vlan standalone":  strings.Replace(equalA, "vlan_bridge = { 10 = \"guest\" }", "", 1),
		"glob":             strings.Replace(equalA, `"lan*"`, `"lan?"`, 1),
		"keep_empty":       strings.Replace(equalA, "keep_empty = true", "keep_empty = false", 1),
		"board":            strings.Replace(equalA, `board = "a"`, `board = "b"`, 1),
		"cloner":           strings.Replace(equalA, `"br%d"`, `"bridge%d"`, 1),
		"port bridge":      strings.Replace(equalA, "bridge = \"lan\"\n", "", 1),
		"match field kind": strings.Replace(equalA, `match.name = "wan"`, `match.driver = "wan"`, 1),
		"port order": `board = "a"
[cloners.bridge]
template = "br%d"
[[port]]
name = "wan"
match.name = "wan"
[[port]]
name = "lan"
match.name = ["eth*", "lan*"]
bridge = "lan"
vlans = [10, 20]
vlan_bridge = { 10 = "guest" }
[[bridge]]
name = "lan"
keep_empty = true
[[bridge]]
name = "guest"
`,
		"extra bridge": equalA + "[[bridge]]\nname = \"iot\"\n",
	}
	for name, doc := range changes {
		t.Run(name, func(t *testing.T) {
			if doc == equalA {
				t.Fatal("the change did not apply")
			}
			c := mustParse(t, doc)
			if a.Equal(c) || c.Equal(a) {
				t.Errorf("changed profile is Equal")
			}
		})
	}
	var nilP *Profile
	if !nilP.Equal(nil) || a.Equal(nil) || nilP.Equal(a) {
		t.Error("nil handling")
	}
}

func TestSysfsFacts(t *testing.T) {
	root := t.TempDir()
	mk := func(dir string) {
		if err := os.MkdirAll(filepath.Join(root, dir), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, link string) {
		mk(filepath.Dir(link))
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			t.Fatal(err)
		}
	}
	// A virtio NIC the way the kernel lays it out: the class entry links to
	// the net device below the PCI function, whose "device" links up to the
	// virtio device, whose "driver" links to the driver.
	mk("bus/virtio/drivers/virtio_net")
	mk("devices/pci0000:00/0000:00:02.0/virtio0/net/eth0")
	ln("../../../bus/virtio/drivers/virtio_net", "devices/pci0000:00/0000:00:02.0/virtio0/driver")
	ln("../../../virtio0", "devices/pci0000:00/0000:00:02.0/virtio0/net/eth0/device")
	ln("../../devices/pci0000:00/0000:00:02.0/virtio0/net/eth0", "class/net/eth0")
	// A device whose driver is not bound (no driver link).
	mk("devices/platform/1e100000.ethernet/net/eth1")
	ln("../../../1e100000.ethernet", "devices/platform/1e100000.ethernet/net/eth1/device")
	ln("../../devices/platform/1e100000.ethernet/net/eth1", "class/net/eth1")
	// A virtual link: no device.
	mk("devices/virtual/net/br0")
	ln("../../devices/virtual/net/br0", "class/net/br0")
	// A broken device link pointing out of the tree.
	mk("devices/virtual/net/odd")
	ln("../../../../../elsewhere", "devices/virtual/net/odd/device")
	ln("../../devices/virtual/net/odd", "class/net/odd")

	tests := []struct{ ifname, driver, bus string }{
		{"eth0", "virtio_net", "pci0000:00/0000:00:02.0/virtio0"},
		{"eth1", "", "platform/1e100000.ethernet"},
		{"br0", "", ""},
		{"odd", "", ""},
		{"missing", "", ""},
		{"../class", "", ""},
		{"", "", ""},
	}
	for _, tt := range tests {
		d, b := SysfsFacts(root, tt.ifname)
		if d != tt.driver || b != tt.bus {
			t.Errorf("SysfsFacts(%q) = %q, %q; want %q, %q", tt.ifname, d, b, tt.driver, tt.bus)
		}
	}
	// The facts feed MatchPort directly.
	p, err := Load("profiles/qemu-amd64.toml")
	if err != nil {
		t.Fatal(err)
	}
	d, b := SysfsFacts(root, "eth0")
	if r, ok := p.MatchPort(LinkFacts{Name: "eth0", Driver: d, Bus: b}); !ok || r.Name != "lan" {
		t.Errorf("eth0 from sysfs: %v %v", r, ok)
	}
	d, b = SysfsFacts(root, "br0")
	if _, ok := p.MatchPort(LinkFacts{Name: "br0", Driver: d, Bus: b}); ok {
		t.Error("br0 matched")
	}
}
