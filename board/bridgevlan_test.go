package board

import (
	"bytes"
	"errors"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr/ifname"
)

// A filtering bridge "vl" (lines 1-6) and a plain one "plain".
const vpre = `board = "t"
[[bridge]]
name = "vl"
vlan_filtering = true
[[bridge]]
name = "plain"
`

func TestBridgeVLANValidation(t *testing.T) {
	tests := []struct {
		name   string
		doc    string
		want   []string // one substring per expected error, in line order
		badVID bool     // the error wraps ifname.ErrBadVID
	}{
		{"tagged VID out of range", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "vl"
bridge_vlan.tagged = [10, 4095]
`, []string{`t.toml:11: port "lan": bridge_vlan.tagged: 4095 out of range 1-4094`}, true},
		{"pvid zero", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "vl"
bridge_vlan.pvid = 0
`, []string{`t.toml:11: port "lan": bridge_vlan.pvid: 0 out of range 1-4094`}, true},
		{"self VID out of range", `board = "t"
[[bridge]]
name = "vl"
vlan_filtering = true
self_vlans = [
  1,
  5000,
]
`, []string{`t.toml:7: bridge "vl": self_vlans: 5000 out of range 1-4094`}, true},
		{"two PVIDs", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "vl"
bridge_vlan = { pvid = [1, 10] }
`, []string{`t.toml:11: port "lan": bridge_vlan.pvid: 2 PVIDs given: a port classifies untagged frames into one VLAN`}, false},
		{"tagged and untagged", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "vl"
bridge_vlan.untagged = [1, 20]
bridge_vlan.tagged = [10,
  20]
`, []string{`t.toml:13: port "lan": bridge_vlan.tagged: VLAN 20 is also in untagged`}, false},
		{"membership on a non-filtering bridge", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "plain"
bridge_vlan.pvid = 1
`, []string{`t.toml:11: port "lan": bridge_vlan: bridge rule "plain" does not filter VLANs`}, false},
		{"membership without a bridge", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge_vlan.pvid = 1
`, []string{`t.toml:10: port "lan": bridge_vlan: the port joins no bridge`}, false},
		{"filtering bridge without membership", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "vl"
`, []string{`t.toml:10: port "lan": bridge: bridge rule "vl" filters VLANs: give the port's bridge_vlan`}, false},
		{"self VLANs on a non-filtering bridge", `board = "t"
[[bridge]]
name = "plain"
self_vlans = [10]
`, []string{`t.toml:4: bridge "plain": self_vlans: the bridge's own VLANs need vlan_filtering = true`}, false},
		{"sub-interface and membership overlap", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "vl"
vlans = [10]
bridge_vlan = { tagged = [10] }
`, []string{`t.toml:12: port "lan": bridge_vlan: VLAN 10 is also in vlans`}, false},
		{"unknown membership key", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "vl"
bridge_vlan = { pvid = 1, egress = [2] }
`, []string{`t.toml:11: port "lan": unknown key "bridge_vlan.egress"`}, false},
		{"tagged repeated", vpre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "vl"
bridge_vlan = { tagged = [10, 10] }
`, []string{`t.toml:11: port "lan": bridge_vlan.tagged: 10 given twice`}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("t.toml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse accepted %+v, want errors %q", p, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			if got := errors.Is(err, ifname.ErrBadVID); got != tt.badVID {
				t.Errorf("errors.Is(err, ifname.ErrBadVID) = %v, want %v", got, tt.badVID)
			}
			errs := allErrors(t, err)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, e, tt.want[i])
				}
			}
		})
	}
}

func TestBridgeVLANParsed(t *testing.T) {
	const doc = `board = "t"
[[bridge]]
name = "lan"
vlan_filtering = true
self_vlans = [10, 1]
[[port]]
name = "access"
match.name = "lan4"
bridge = "lan"
bridge_vlan.pvid = 10
[[port]]
name = "trunk"
match.name = "lan*"
bridge = "lan"
bridge_vlan = { pvid = 1, untagged = [30], tagged = [10, 20] }
[[port]]
name = "hybrid"
match.name = "eth*"
bridge = "lan"
bridge_vlan = { pvid = 10, tagged = [10] }
`
	p, err := Parse("t.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := p.Bridge("lan")
	if !b.VLANFiltering || !slices.Equal(b.SelfVLANs, []uint16{1, 10}) {
		t.Errorf("bridge = %+v, want filtering with self VLANs [1 10]", b)
	}
	for _, tt := range []struct {
		port string
		want []VLANEntry
	}{
		{"access", []VLANEntry{{VID: 10, PVID: true, Untagged: true}}},
		{"trunk", []VLANEntry{{VID: 1, PVID: true, Untagged: true}, {VID: 10}, {VID: 20}, {VID: 30, Untagged: true}}},
		{"hybrid", []VLANEntry{{VID: 10, PVID: true}}},
	} {
		r, _ := p.Port(tt.port)
		if got := r.BridgeVLAN.Entries(); !slices.Equal(got, tt.want) {
			t.Errorf("port %s entries = %+v, want %+v", tt.port, got, tt.want)
		}
	}

	// Equal sees a membership change, and not a rewording of the same one.
	for _, tt := range []struct {
		from, to string
		equal    bool
	}{
		{"bridge_vlan.pvid = 10", "bridge_vlan = { pvid = 10, untagged = [10] }", true},
		{"bridge_vlan.pvid = 10", "bridge_vlan.pvid = 11", false},
		{"self_vlans = [10, 1]", "self_vlans = [1, 10]", true},
		{"self_vlans = [10, 1]", "self_vlans = [1]", false},
		{"tagged = [10, 20]", "tagged = [10]", false},
	} {
		q, err := Parse("t.toml", []byte(strings.Replace(doc, tt.from, tt.to, 1)))
		if err != nil {
			t.Fatal(err)
		}
		if p.Equal(q) != tt.equal {
			t.Errorf("%q -> %q: Equal = %v, want %v", tt.from, tt.to, !tt.equal, tt.equal)
		}
	}
}

// The README's VLAN-aware example is a valid profile (with a board line)
// and means what its comments say.
func TestReadmeBridgeVLANExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```toml\n(.*?)```").FindAllSubmatch(readme, -1)
	var doc []byte
	for _, b := range blocks {
		if bytes.Contains(b[1], []byte("vlan_filtering = true")) {
			doc = append([]byte("board = \"readme\"\n"), b[1]...)
		}
	}
	if doc == nil {
		t.Fatal("no toml block with vlan_filtering = true in README.md")
	}
	p, err := Parse("README.md", doc)
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	access, _ := p.MatchPort(LinkFacts{Name: "lan4"})
	trunk, _ := p.MatchPort(LinkFacts{Name: "lan1"})
	if got, want := access.BridgeVLAN.Entries(), []VLANEntry{{VID: 10, PVID: true, Untagged: true}}; !slices.Equal(got, want) {
		t.Errorf("lan4 = %+v, want %+v", got, want)
	}
	if got, want := trunk.BridgeVLAN.Entries(), []VLANEntry{{VID: 1, PVID: true, Untagged: true}, {VID: 10}, {VID: 20}}; !slices.Equal(got, want) {
		t.Errorf("lan1 = %+v, want %+v", got, want)
	}
}

// A port's 802.1Q VLAN link may not join a filtering bridge: it would be a
// port with no membership, passing nothing.
func TestVLANLinkIntoFilteringBridgeRefused(t *testing.T) {
	_, err := Parse("t.toml", []byte(vpre+`[[port]]
name = "lan"
match.name = "eth*"
vlans = [10]
vlan_bridge = { 10 = "vl" }
`))
	errs := allErrors(t, err)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), `t.toml:11: port "lan": vlan_bridge.10: bridge rule "vl" filters VLANs`) {
		t.Errorf("got %v", err)
	}
}
