package main

import "testing"

// Console lines as the amd64 guest prints them (\r already dropped).
func TestCleanAndVisible(t *testing.T) {
	for _, tc := range []struct {
		raw  string
		want string // "" for not shown
	}{
		// SeaBIOS's terminal reset.
		{"\x1bc\x1b[?7l\x1b[2J\x1b[0mSeaBIOS (version 1.16.2-debian-1.16.2-1)", "SeaBIOS (version 1.16.2-debian-1.16.2-1)"},
		// The editor's first help line with ifmgrd's log glued to it.
		{"M-? toggle key help \u2022 C-d erase/stop \u2022 C-c clear/cancel \u2022 M-. hide/show prompt\x1b[0Dtime=2026-11-27T07:00:37.025Z level=INFO msg=\"ifmgrd serving\"",
			"time=2026-11-27T07:00:37.025Z level=INFO msg=\"ifmgrd serving\""},
		// The help line with the redraw of the line being typed.
		{"M-? toggle key help \u2022 C-d erase/stop \u2022 C-c clear/cancel \u2022 C-r search hist \u2026\x1b[0D\x1b[1A\x1b[0D\x1b[2K> ifc                     ", ""},
		{"\x1b[0D\x1b[1A\x1b[0D\x1b[2K> echo __ready_$?__                          ", ""},
		{"\x1b[?25l>                                 ", ""},
		// The terminal's echo of a line typed in canonical mode.
		{"ifctl list; echo __done_2_$?__", ""},
		// Output after the editor's exit sequence, and the tags.
		{"\x1b[0D\x1b[2K\x1b[?25h\x1b[?1002l\x1b[?1003lbridge0  bridge  0  rule=bridge/guest  up", "bridge0  bridge  0  rule=bridge/guest  up"},
		{"\x1b[0D\x1b[2K\x1b[?25h\x1b[?1002l\x1b[?1003l__ready_0__", ""},
		{"__done_12_0__", ""},
		{"no newline before__done_3_1__", "no newline before"},
		{"[   13.561149] reboot: Power down", "[   13.561149] reboot: Power down"},
	} {
		got, ok := visible(cleanLine([]byte(tc.raw)))
		if !ok {
			got = ""
		}
		if got != tc.want {
			t.Errorf("%q: shown as %q, want %q", tc.raw, got, tc.want)
		}
	}
}

func TestStates(t *testing.T) {
	list := `bridge0  bridge  0  rule=bridge/guest                           up
bridge1  bridge  1  rule=bridge/lan                             up
vlan0    vlan    0  rule=port/lan,mac=52:54:00:12:34:01,vid=10  up
vlan1    vlan    1  rule=port/lan,mac=52:54:00:12:34:01,vid=20  up
vlan2    vlan    2  rule=port/lan,mac=52:54:00:12:34:02,vid=10  up
vlan3    vlan    3  rule=port/lan,mac=52:54:00:12:34:02,vid=20  down
vlan4    vlan    4  rule=port/lan,mac=52:54:00:12:34:03,vid=10  absent
time=2026-11-27T07:14:21.689Z level=INFO msg=created name=vlan5 ifindex=12 identity="rule=port/lan,mac=52:54:00:12:34:03,vid=20" trigger="link events"
`
	if allUp(list, profileLinks) {
		t.Error("allUp: vlan3 is down")
	}
	if !allUp(list, profileLinks[:5]) {
		t.Error("allUp: the first five are up")
	}
	if !noneUp(list, hotplugLinks) {
		t.Error("noneUp: vlan4 is absent, vlan5 not listed (a log line is no entry)")
	}
	if noneUp(list, profileLinks) {
		t.Error("noneUp: most profile links are up")
	}
}
