package daemon

import (
	"fmt"
	"os/exec"
	"strings"
	"testing"
)

const membersProfile = `
board = "members"
[[port]]
name = "lan"
match.name = "ln*"
bridge = "lan"
[[bridge]]
name = "lan"
`

// A link someone else puts into a managed bridge (hostapd's wlan0, a VM's
// tap, a container's veth) stays there: before, the planner released any
// member no rule matches, within milliseconds, without a log line, and the
// dry run said nothing. Members ifmgr put there still leave when the
// profile no longer wants them, with a log line, and that knowledge comes
// from the profile's rules, so it survives a restart.
func TestForeignMemberLeftAlone(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(membersProfile)
	var logs syncBuffer
	e.logOut = &logs
	e.start()
	veth := func(name, peer string) {
		t.Helper()
		if err := ip(t, "link", "add", name, "group", fmt.Sprint(e.foreignGroup()), "type", "veth", "peer", "name", peer, "group", fmt.Sprint(e.foreignGroup())); err != nil {
			t.Fatal(err)
		}
	}
	veth("ln0", "pl0")
	var bridge string
	waitFor(t, func() bool { bridge = linkMaster(t, "ln0"); return bridge != "" })

	veth("tap0", "tapp")
	if err := ip(t, "link", "set", "tap0", "master", bridge); err != nil {
		t.Fatal(err)
	}
	// Events, a resync and a new port: every path that converges.
	veth("ln1", "pl1")
	waitFor(t, func() bool { return linkMaster(t, "ln1") == bridge })
	if err := e.client().Resync(); err != nil {
		t.Fatal(err)
	}
	if m := linkMaster(t, "tap0"); m != bridge {
		t.Fatalf("tap0, put into %s by someone else, is now in %q", bridge, m)
	}
	if dry, err := e.client().Reload(true); err != nil || len(dry) != 0 {
		t.Errorf("dry run of the profile in force: %q, %v; want nothing to change", dry, err)
	}

	// Restart: tap0 is still not ifmgr's, ln0 and ln1 are (by the rule).
	e.stop()
	e.start()
	if err := e.client().Resync(); err != nil {
		t.Fatal(err)
	}
	if m := masters(t); m["tap0"] != bridge || m["ln0"] != bridge || m["ln1"] != bridge {
		t.Fatalf("after a restart: tap0 in %q, ln0 in %q, ln1 in %q; want all in %s", m["tap0"], m["ln0"], m["ln1"], bridge)
	}
	// The rule narrows to ln1: ln0 leaves (ifmgr put it there), tap0 stays.
	e.writeProfile(strings.Replace(membersProfile, `"ln*"`, `"ln1"`, 1))
	dry, err := e.client().Reload(true)
	if err != nil || len(dry) != 1 || !strings.HasPrefix(dry[0], "release ln0") {
		t.Fatalf("dry run of the narrowed rule: %q, %v; want only the release of ln0", dry, err)
	}
	if _, err := e.client().Reload(false); err != nil {
		t.Fatal(err)
	}
	if m := masters(t); m["tap0"] != bridge || m["ln0"] != "" || m["ln1"] != bridge {
		t.Errorf("after narrowing the rule: tap0 in %q, ln0 in %q, ln1 in %q", m["tap0"], m["ln0"], m["ln1"])
	}
	if !strings.Contains(logs.String(), `msg="released from bridge" port=ln0`) {
		t.Errorf("the release of ln0 is not logged:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), "port=tap0") {
		t.Errorf("something was done to tap0:\n%s", logs.String())
	}
}

// isUp reads a link's administrative state (IFF_UP) from the kernel.
func isUp(t *testing.T, name string) bool {
	t.Helper()
	out, err := exec.Command("ip", "-o", "link", "show", "dev", name).Output()
	if err != nil {
		t.Fatalf("ip link show %s: %v", name, err)
	}
	flags, _, _ := strings.Cut(string(out), ">")
	return strings.Contains(flags+",", ",UP,") || strings.Contains(flags, "<UP,") || strings.HasSuffix(flags, "<UP")
}

// One rule of admin state for bridges, VLANs and ports: ifmgr brings up what
// it creates or takes in, once, then respects an operator's down. Before, a
// bridge set down stayed down while a port set down was set back up at once,
// silently, so no port could be disabled.
func TestAdminDownRespected(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(membersProfile)
	var logs syncBuffer
	e.logOut = &logs
	e.start()
	for _, p := range []string{"ln0", "ln1"} {
		if err := ip(t, "link", "add", p, "group", fmt.Sprint(e.foreignGroup()), "type", "veth", "peer", "name", "p"+p, "group", fmt.Sprint(e.foreignGroup())); err != nil {
			t.Fatal(err)
		}
	}
	var bridge string
	waitFor(t, func() bool { m := masters(t); bridge = m["ln0"]; return bridge != "" && m["ln1"] == bridge })
	if !isUp(t, "ln0") || !isUp(t, "ln1") || !isUp(t, bridge) {
		t.Fatalf("ports and bridge taken in down: ln0 %v ln1 %v %s %v", isUp(t, "ln0"), isUp(t, "ln1"), bridge, isUp(t, bridge))
	}
	if strings.Count(logs.String(), `msg="brought up"`) != 2 {
		t.Errorf("bringing the 2 ports up is not logged once each:\n%s", logs.String())
	}
	for _, l := range []string{"ln0", bridge} {
		if err := ip(t, "link", "set", l, "down"); err != nil {
			t.Fatal(err)
		}
	}
	// Events for both, a new port (a converge that takes something in),
	// and a resync.
	if err := ip(t, "link", "add", "ln2", "group", fmt.Sprint(e.foreignGroup()), "type", "veth", "peer", "name", "pln2", "group", fmt.Sprint(e.foreignGroup())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return linkMaster(t, "ln2") == bridge })
	if err := e.client().Resync(); err != nil {
		t.Fatal(err)
	}
	if isUp(t, "ln0") || isUp(t, bridge) {
		t.Errorf("set down by an operator, brought up again: ln0 up %v, %s up %v", isUp(t, "ln0"), bridge, isUp(t, bridge))
	}
	if !isUp(t, "ln2") {
		t.Error("ln2, taken in down, was not brought up")
	}
	if dry, err := e.client().Reload(true); err != nil || len(dry) != 0 {
		t.Errorf("dry run after the operator's downs: %q, %v; want nothing to change", dry, err)
	}
}

// An operator's `ip link del bridge0` under six ports: before, ifmgr logged
// six false ERRORs (joins to the deleted bridge's stale ifindex, "invalid
// argument") before making it again. Now it says what happened, once, and
// makes the bridge again with every port in it.
func TestBridgeDeletedFromOutside(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(membersProfile)
	var logs syncBuffer
	e.logOut = &logs
	e.start()
	const ports = 6
	for i := 0; i < ports; i++ {
		if err := ip(t, "link", "add", fmt.Sprintf("ln%d", i), "group", fmt.Sprint(e.foreignGroup()), "type", "veth", "peer", "name", fmt.Sprintf("pln%d", i), "group", fmt.Sprint(e.foreignGroup())); err != nil {
			t.Fatal(err)
		}
	}
	inOne := func() string {
		m := masters(t)
		b := m["ln0"]
		for i := 1; i < ports; i++ {
			if m[fmt.Sprintf("ln%d", i)] != b {
				return ""
			}
		}
		return b
	}
	var bridge string
	waitFor(t, func() bool { bridge = inOne(); return bridge != "" })
	before := linkIndexes(t)[bridge]
	if err := ip(t, "link", "del", bridge); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { b := inOne(); return b != "" && linkIndexes(t)[b] != before })
	if err := e.client().Resync(); err != nil {
		t.Fatal(err)
	}
	log := logs.String()
	if strings.Contains(log, "level=ERROR") {
		t.Errorf("an outside delete of %s logged errors:\n%s", bridge, log)
	}
	if !strings.Contains(log, "deleted from outside") {
		t.Errorf("the log does not say %s was deleted from outside:\n%s", bridge, log)
	}
}
