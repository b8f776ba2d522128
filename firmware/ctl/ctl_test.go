package ctl

import (
	"bytes"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr"
)

func TestListShowsMembership(t *testing.T) {
	list := []ifmgr.Info{
		{Name: "bridge0", Kind: "bridge", Unit: 0, Identity: "rule=bridge/lan", State: "up", VLANFiltering: true,
			SelfVLANs: ifmgr.VLANMembers{{VID: 1}, {VID: 10}},
			Ports: []ifmgr.PortVLANs{
				{Port: "eth0", VLANs: ifmgr.VLANMembers{{VID: 1, PVID: true, Untagged: true}, {VID: 10}, {VID: 20}}},
				{Port: "eth1", VLANs: ifmgr.VLANMembers{{VID: 10, PVID: true}}},
				{Port: "wlan0"},
			}},
		{Name: "bridge1", Kind: "bridge", Unit: 1, Identity: "rule=bridge/guest", State: "up"},
		{Name: "vlan0", Kind: "vlan", Unit: 0, Identity: "rule=bridge/lan,vid=1", State: "up"},
	}
	var b bytes.Buffer
	if err := writeList(&b, list); err != nil {
		t.Fatal(err)
	}
	want := []string{
		"bridge0 bridge 0 rule=bridge/lan up",
		"bridge1 bridge 1 rule=bridge/guest up",
		"vlan0 vlan 0 rule=bridge/lan,vid=1 up",
		"bridge VLANs (vid:u untagged, vid:t tagged, * PVID):",
		"bridge0 self 1:t,10:t",
		"bridge0 eth0 1:u*,10:t,20:t",
		"bridge0 eth1 10:t*",
		"bridge0 wlan0 -",
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	if len(lines) != len(want) {
		t.Fatalf("list:\n%s\nwant %d lines", b.String(), len(want))
	}
	fiveFields := 0
	for i, l := range lines {
		if got := strings.Join(strings.Fields(l), " "); got != want[i] {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
		if len(strings.Fields(l)) == 5 {
			fiveFields++
		}
	}
	// Scripts read the interfaces as the five-field lines: the membership
	// lines must not look like one.
	if fiveFields != 3 {
		t.Errorf("%d five-field lines, want the 3 interfaces", fiveFields)
	}

	// No filtering bridge: no membership section, output as before.
	b.Reset()
	if err := writeList(&b, list[1:]); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(b.String(), "bridge VLANs") {
		t.Errorf("membership section without a filtering bridge:\n%s", b.String())
	}
}

func TestStatusCountsMembership(t *testing.T) {
	var b bytes.Buffer
	writeStatus(&b, ifmgr.Status{BridgeVLANs: &ifmgr.BridgeVLANStatus{Bridges: 1, Ports: 3, PortEntries: 4, SelfEntries: 2, Pending: 1}})
	if want := "bridge VLANs: 1 filtering bridges, 2 own entries; 3 ports, 4 entries; 1 changes pending\n"; !strings.Contains(b.String(), want) {
		t.Errorf("status:\n%s\nwant a line %q", b.String(), want)
	}
	b.Reset()
	writeStatus(&b, ifmgr.Status{})
	if strings.Contains(b.String(), "bridge VLANs") {
		t.Errorf("status without filtering bridges mentions them:\n%s", b.String())
	}
}
