package daemon

import (
	"fmt"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr"
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
