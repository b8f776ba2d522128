package plan

import (
	"strings"
	"testing"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/persist"
)

// worstLinks are ports whose identities are as long as ports get: a
// 32-byte permanent address (InfiniBand-like), ports without one on a
// deeply nested bus with names that JSON escapes (one six to one in every
// byte), and a virtual port.
func worstLinks() []Link {
	longMAC := strings.TrimSuffix(strings.Repeat("ab:", persist.MaxAddrLen), ":")
	deepBus := "pci0000:00/0000:00:14.0" + strings.Repeat("/usb1/1-1.2.3.4.5", 20) + "/1-1.2.3.4.5:1.0"
	return []Link{
		{Index: 1, Name: "lan0", MAC: "02:00:00:00:00:01", PermMAC: longMAC},
		{Index: 2, Name: "lan\x01\x02\x03<>&\"\\\x7f\t456", MAC: "02:00:00:00:00:02", Bus: deepBus, Driver: "r8152"},
		{Index: 3, Name: "lan-virtual-015", MAC: "02:00:00:00:00:03"},
		{Index: 4, Name: strings.Repeat("\x01", 15), MAC: "02:00:00:00:00:04", Bus: deepBus + "/x"},
	}
}

// worstProfile: every rule name n bytes, per-port bridges for the port
// itself and for its VLANs, the longest VLAN id.
func worstProfile(n int) *board.Profile {
	name := func(c string) string { return strings.Repeat(c, n) }
	return &board.Profile{
		Board:   "t",
		Cloners: map[string]board.ClonerSpec{board.ClonerBridge: {Template: "bridge%d", Max: 32767}, board.ClonerVLAN: {Template: "vlan%d", Max: 32767}},
		Ports: []board.PortRule{{Name: name("p"), Match: board.Match{Names: []string{"*"}}, Bridge: name("a"),
			VLANs: []uint16{1, 4094}, VLANBridge: map[uint16]string{4094: name("b")}}},
		Bridges: []board.BridgeRule{{Name: name("a"), PerPort: true}, {Name: name("b"), PerPort: true}, {Name: name("s")}},
	}
}

// The limit is exact: with rule names of persist.MaxRuleNameLen bytes every
// identity the planner derives has an alias the kernel takes (at most 255
// bytes) and that reads back to the same identity; one byte more and some
// identity does not fit.
func TestDerivedIdentitiesFitTheAlias(t *testing.T) {
	longest := func(n int) (int, persist.Identity) {
		pl := Compute(worstProfile(n), worstLinks())
		if len(pl.Targets) != 4*4 { // per port: 2 VLANs, 2 per-port bridges; no shared bridge
			t.Fatalf("%d targets, want 16: %v", len(pl.Targets), pl.Targets)
		}
		most, which := 0, persist.Identity{}
		for _, tg := range pl.Targets {
			alias := tg.Identity.Alias()
			if len(alias) > most {
				most, which = len(alias), tg.Identity
			}
			if len(alias) > persist.MaxAliasLen {
				continue
			}
			back, ok := persist.IdentityFromAlias(alias)
			if !ok || back.Key() != tg.Key() {
				t.Errorf("alias %q reads back as %+v (ok %v), want %+v", alias, back, ok, tg.Identity)
			}
		}
		return most, which
	}
	if most, id := longest(persist.MaxRuleNameLen); most > persist.MaxAliasLen {
		t.Errorf("rule names of %d bytes: alias of %d bytes (%s), longer than %d", persist.MaxRuleNameLen, most, id.Key(), persist.MaxAliasLen)
	}
	if most, _ := longest(persist.MaxRuleNameLen + 1); most <= persist.MaxAliasLen {
		t.Errorf("rule names of %d bytes still fit (longest alias %d bytes): MaxRuleNameLen is not the limit", persist.MaxRuleNameLen+1, most)
	}
}
