package main

import "testing"

// Console lines as qemu-test/console hands them over (escape sequences
// and \r already removed), from an amd64 guest with gosh's "$ " prompt.
func TestVisible(t *testing.T) {
	for _, tc := range []struct {
		line string
		want string // "" for not shown
	}{
		{"SeaBIOS (version 1.16.2-debian-1.16.2-1)", "SeaBIOS (version 1.16.2-debian-1.16.2-1)"},
		// The terminal's echo of a command line, after the prompt.
		{"$ ifctl list; echo __done_2_$?__", ""},
		{"$ echo __ready_$?__", ""},
		// Output starting where the prompt of the last command left off.
		{"$ bridge0  bridge  0  rule=bridge/guest  up", "bridge0  bridge  0  rule=bridge/guest  up"},
		{"__ready_0__", ""},
		{"__done_12_0__", ""},
		// gosh's echo writes its newline apart: ifmgrd's log behind a tag.
		{`__done_3_0__time=2026-11-27T07:00:37.025Z level=INFO msg="ifmgrd serving"`, `time=2026-11-27T07:00:37.025Z level=INFO msg="ifmgrd serving"`},
		{"no newline before__done_3_1__", "no newline before"},
		{"[   13.561149] reboot: Power down", "[   13.561149] reboot: Power down"},
	} {
		got, ok := visible(tc.line)
		if !ok {
			got = ""
		}
		if got != tc.want {
			t.Errorf("%q: shown as %q, want %q", tc.line, got, tc.want)
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
