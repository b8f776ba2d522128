package daemon

import (
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/persist"
)

const renamedProfile = `
board = "renamed"
[[port]]
name = "lan"
match.name = "rn*"
bridge = "lan"
[[bridge]]
name = "lan"
`

// ownedIdentities maps the identity each of the kernel's owned links
// claims (its alias) to their names, and fails the test for two links with
// one identity: the duplicate the old code made.
func (e *env) ownedIdentities() map[string][]string {
	e.t.Helper()
	out := map[string][]string{}
	for name, l := range kernelOwned(e.t, e.group) {
		id, ok := persist.IdentityFromAlias(l.Alias)
		if !ok {
			e.t.Errorf("owned link %s has no identity alias (%q)", name, l.Alias)
			continue
		}
		out[id.Key()] = append(out[id.Key()], name)
	}
	for key, names := range out {
		if len(names) > 1 {
			e.t.Errorf("identity %s claimed by %d owned links: %v", key, len(names), names)
		}
	}
	return out
}

func (e *env) listedAs(name string) (ifmgr.Info, bool) {
	e.t.Helper()
	for _, in := range e.checkAgree() {
		if in.Name == name {
			return in, true
		}
	}
	return ifmgr.Info{}, false
}

// Another process renames two of ifmgr's own bridges out of the unit space
// (an ifctl-made one, and the profile's bridge with a port in it), the way
// an operator does it: down, then rename. Each keeps its record and its
// unit: no client create gets the unit, the profile makes no second bridge
// for the identity (the renamed one keeps serving it: a new port joins it),
// and list shows the current names; all of it also after a restart. When
// the renamed links are deleted, the ifctl unit comes back and the profile
// re-creates its bridge under its own name with its ports.
func TestOwnBridgesRenamedFromOutside(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(renamedProfile)
	var logs syncBuffer
	e.logOut = &logs
	e.start()
	veth := func(name string) {
		t.Helper()
		if err := ip(t, "link", "add", name, "group", fmt.Sprint(e.foreignGroup()), "type", "veth", "peer", "name", "p"+name, "group", fmt.Sprint(e.foreignGroup())); err != nil {
			t.Fatal(err)
		}
	}
	veth("rn0")
	var lan string
	waitFor(t, func() bool { lan = linkMaster(t, "rn0"); return lan != "" })
	c := e.client()
	mine, err := c.Create("bridge", "", 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("profile bridge %s, ifctl bridge %s", lan, mine.Name)
	renames := map[string]string{mine.Name: "fo1", lan: "fo2"}
	for from, to := range renames {
		if err := ip(t, "link", "set", from, "down"); err != nil {
			t.Fatal(err)
		}
		if err := ip(t, "link", "set", from, "name", to); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return len(e.status().Renamed) == 2 })

	check := func(when string) {
		t.Helper()
		e.ownedIdentities()
		st := e.status()
		for from, to := range renames {
			if st.Renamed[from] != to {
				t.Errorf("%s: status renamed = %v, want %s -> %s", when, st.Renamed, from, to)
			}
			if in, ok := e.listedAs(to); !ok || in.RenamedFrom != from || fmt.Sprintf("bridge%d", in.Unit) != from {
				t.Errorf("%s: %s listed as %+v (%v), want renamed from %s", when, to, in, ok, from)
			}
			if _, ok := kernelOwned(t, e.group)[from]; ok {
				t.Errorf("%s: a second owned %s exists besides %s", when, from, to)
			}
		}
		for range 3 {
			in, err := c.Create("bridge", "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if _, reserved := renames[in.Name]; reserved {
				t.Errorf("%s: create got %s, reserved for the renamed %s", when, in.Name, renames[in.Name])
			}
		}
	}
	check("after the renames")
	for from, to := range renames {
		line := fmt.Sprintf("%s renamed from outside to %s; unit %s stays reserved", from, to, strings.TrimPrefix(from, "bridge"))
		if n := strings.Count(logs.String(), line); n != 1 {
			t.Errorf("log says %q %d times, want once", line, n)
		}
	}
	e.stop()
	e.start()
	c = e.client()
	check("after a restart")
	// The renamed bridge still serves the profile's identity.
	veth("rn1")
	waitFor(t, func() bool { return linkMaster(t, "rn1") == "fo2" })

	for _, to := range renames {
		if err := ip(t, "link", "delete", to); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, func() bool { return linkMaster(t, "rn0") == lan && linkMaster(t, "rn1") == lan })
	e.ownedIdentities()
	if in, err := c.Create("bridge", "", 0); err != nil || in.Name != mine.Name {
		t.Errorf("after %s's link went, create = %s, %v; want the unit back", mine.Name, in.Name, err)
	}
	if st := e.status(); len(st.Renamed) != 0 || st.Cloners[0].Held != 0 {
		t.Errorf("after the renamed links went: renamed %v, %d units held", st.Renamed, st.Cloners[0].Held)
	}
	e.checkAgree()
	e.checkDBMatchesKernel()
}

// ownIntruderScript is a second process that also renames and deletes
// ifmgr's OWN bridges (group $o), the way an operator would (down, then
// rename): out of the unit space and back, into other units' names, and
// deletes renamed ones; and adds and deletes links of its own (group $g)
// with names in the unit space.
const ownIntruderScript = `
stop=$1; g=$2; o=$3; n=0
pick() { ip -o link show group $1 | awk -F': ' '{sub(/@.*/, "", $2); print $2}' | grep -E "$2" | shuf -n 1; }
while [ ! -e "$stop" ]; do
	b=bridge$((RANDOM % 40)); n=$((n+1))
	case $((RANDOM % 6)) in
	0) ip link add $b group $g type veth peer name fi$n group $g ;;
	1|2) a=$(pick $o '^bridge[0-9]+$') && [ -n "$a" ] && ip link set $a down && ip link set $a name fo$n ;;
	3) a=$(pick $o '^fo') && [ -n "$a" ] && ip link set $a name $b ;;
	4) a=$(pick $o '^fo') && [ -n "$a" ] && ip link delete $a ;;
	5) a=$(pick $g '^bridge') && [ -n "$a" ] && ip link delete $a ;;
	esac 2>/dev/null
done
echo $n
`

// TestIntruderRenamesOwnLinks: while 4 clients create and destroy bridges,
// another process renames and deletes the daemon's own bridges and squats
// on unit names. A client's destroy, by the name it was given, removes the
// interface it was given (by ifindex) and no other, whatever the other
// process called it or put under that name; it fails only when the other
// process deleted that interface first. No two owned links ever claim one
// identity, list and kernel agree (by current name), also across a
// restart; once the renamed links and the squatters are gone, no unit
// stays held or reserved for them, and the free units below the highest
// in use are handed out again, lowest first.
func TestIntruderRenamesOwnLinks(t *testing.T) {
	e := newEnv(t)
	e.start()
	stop := e.startIntruder(ownIntruderScript, fmt.Sprint(e.foreignGroup()), fmt.Sprint(e.group))
	var lost atomic.Int32
	e.churnClients(func(ifmgr.Info) {}, func(c *api.Client, in ifmgr.Info) error {
		err := c.Destroy(in.Name)
		if err != nil {
			lost.Add(1)
		}
		if l, ok := linkByIndex(t, in.Index); ok {
			return fmt.Errorf("destroy %s answered %v, and its link (ifindex %d) is still there, as %s", in.Name, err, in.Index, l.Name)
		}
		// Deleted before, by the other process: the name is free now, or
		// a foreign link's, or (handed out again) another client's.
		if err != nil && !errors.Is(err, ifmgr.ErrNoSuchLink) && !errors.Is(err, ifmgr.ErrNotOwned) {
			return fmt.Errorf("destroy %s: %w", in.Name, err)
		}
		return nil
	})
	ops := stop()
	e.ownedIdentities()
	e.checkAgree()
	st := e.status()
	t.Logf("intruder ran %s ip operations; %d destroys found the client's bridge deleted by it; %d of the daemon's bridges renamed at the end, %d units held for foreign links",
		ops, lost.Load(), len(st.Renamed), st.Cloners[0].Held)
	e.stop()
	e.start()
	e.ownedIdentities()
	e.checkAgree()
	if again := e.status(); len(again.Renamed) != len(st.Renamed) {
		t.Errorf("after a restart %d renamed bridges, before %d", len(again.Renamed), len(st.Renamed))
	}

	// The other process's links and the renamed ones go.
	// (A group delete can answer "No such device" for a veth whose peer it
	// deleted first: what matters is that none is left.)
	exec.Command("ip", "link", "delete", "group", fmt.Sprint(e.foreignGroup())).Run()
	if out, _ := exec.Command("ip", "-o", "link", "show", "group", fmt.Sprint(e.foreignGroup())).Output(); len(out) != 0 {
		t.Fatalf("the intruder's links are not all gone: %s", out)
	}
	for _, now := range e.status().Renamed {
		if err := ip(t, "link", "delete", now); err != nil {
			t.Fatal(err)
		}
	}
	e.checkFreeUnitsReused()
	e.ownedIdentities()
	e.checkDBMatchesKernel()
}
