package daemon

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/ifmgr/kernel"
)

// intruderScript is the second process: a shell loop of ip commands that,
// until its stop file appears, adds links with names in ifmgr's unit space
// (bridge0-bridge39), renames them within it and out of and back into it,
// and deletes them, at random. It touches only its own links (the foreign
// group, also used by the cleanup): what another process does to ifmgr's
// own links is another question (see docs/reliability.md, "faults").
const intruderScript = `
stop=$1; g=$2; n=0
mine() { ip -o link show group $g | grep -q " $1@"; }
while [ ! -e "$stop" ]; do
	a=bridge$((RANDOM % 40)); b=bridge$((RANDOM % 40)); n=$((n+1))
	case $((RANDOM % 5)) in
	0|1) ip link add $a group $g type veth peer name fi$n group $g ;;
	2) mine $a && ip link set $a name $b ;;
	3) mine $a && ip link set $a name fo$n && { ip link set fo$n name $b || ip link delete fo$n; } ;;
	4) mine $a && ip link delete $a ;;
	esac 2>/dev/null
done
echo $n
`

// startIntruder runs script, a second process: a bash loop of ip commands
// that runs until the file named by its $1 appears and then prints how
// many operations it ran; args are its $2 and on. stop ends it, fails the
// test if it failed, and returns that count. The test's cleanup stops it
// too (before the env's cleanup deletes the links), if the test ends
// first.
func (e *env) startIntruder(script string, args ...string) (stop func() string) {
	e.t.Helper()
	stopFile := filepath.Join(e.dir, "intruder.stop")
	cmd := exec.Command("bash", append([]string{"-c", script, "intruder", stopFile}, args...)...)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	var once sync.Once
	var err error
	halt := func() {
		once.Do(func() {
			if werr := os.WriteFile(stopFile, nil, 0o644); werr != nil {
				cmd.Process.Kill()
			}
			err = cmd.Wait()
		})
	}
	e.t.Cleanup(halt)
	return func() string {
		e.t.Helper()
		halt()
		if err != nil {
			e.t.Fatalf("intruder: %v", err)
		}
		return strings.TrimSpace(out.String())
	}
}

// churnClients runs 4 clients at once, each making 40 requests: a create
// of a bridge (created is told of each), and every third request the
// destroy of its oldest bridge, done by destroy, which returns what was
// wrong with it, if anything (that client then stops).
func (e *env) churnClients(created func(ifmgr.Info), destroy func(*api.Client, ifmgr.Info) error) {
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client()
			var mine []ifmgr.Info
			for i := range 40 {
				if i%3 == 2 && len(mine) > 0 { // now and then give one back
					if err := destroy(c, mine[0]); err != nil {
						e.t.Errorf("client %d: %v", w, err)
						return
					}
					mine = mine[1:]
					continue
				}
				in, err := c.Create("bridge", "", 0)
				if err != nil {
					e.t.Errorf("client %d: create: %v", w, err)
					return
				}
				created(in)
				mine = append(mine, in)
			}
		}()
	}
	wg.Wait()
}

// checkFreeUnitsReused: once the other process's links are gone, no unit
// stays held or reserved for them, and every free unit below the highest
// one in use is handed out again, lowest first: none was leaked. It waits
// (up to 2 minutes, a hang bound) for the daemon to hear of the links'
// going, and shows its status if it never does.
func (e *env) checkFreeUnitsReused() {
	e.t.Helper()
	c := e.client()
	var st ifmgr.Status
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		var err error
		if st, err = c.Status(); err != nil {
			e.t.Fatal(err)
		}
		if st.Cloners[0].Held == 0 && len(st.Renamed) == 0 {
			break
		}
		if time.Now().After(deadline) {
			js, _ := json.MarshalIndent(st, "", "  ")
			var left []string
			for name := range kernelOwned(e.t, e.foreignGroup()) {
				left = append(left, name)
			}
			e.t.Fatalf("2 minutes after the other process's links went, %d units are still held and %d reserved for renamed links; its links left: %v; status:\n%s",
				st.Cloners[0].Held, len(st.Renamed), left, js)
		}
	}
	used := map[int]bool{}
	highest := -1
	for _, in := range e.checkAgree() {
		used[int(in.Unit)] = true
		highest = max(highest, int(in.Unit))
	}
	var gaps, again []string
	for u := range highest {
		if !used[u] {
			gaps = append(gaps, fmt.Sprintf("bridge%d", u))
		}
	}
	for range gaps {
		in, err := c.Create("bridge", "", 0)
		if err != nil {
			e.t.Fatal(err)
		}
		again = append(again, in.Name)
	}
	sort.Strings(gaps)
	sort.Strings(again)
	if !slices.Equal(gaps, again) {
		e.t.Errorf("after the other process left, the free units below bridge%d were handed out as %v, want %v", highest, again, gaps)
	}
	e.t.Logf("%d units free below bridge%d after the other process left, all handed out again", len(gaps), highest)
}

// linkByIndex returns the kernel's link with ifindex index, if there is
// one.
func linkByIndex(t *testing.T, index uint32) (kernel.Link, bool) {
	t.Helper()
	c, err := kernel.Dial()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	l, err := c.LinkByIndex(index)
	switch {
	case errors.Is(err, kernel.ErrNotFound):
		return kernel.Link{}, false
	case err != nil:
		t.Fatal(err)
	}
	return l, true
}

// TestIntruderInUnitSpace runs the intruder while clients create and
// destroy bridges. No name is handed out twice or while a foreign link has
// it; DB and kernel agree; and once the intruder's links are gone, every
// unit comes back: the gaps below the highest unit in use are handed out
// again, lowest first, and no unit stays held.
func TestIntruderInUnitSpace(t *testing.T) {
	e := newEnv(t)
	e.start()
	stop := e.startIntruder(intruderScript, fmt.Sprint(e.foreignGroup()))
	var mu sync.Mutex
	live := map[string]bool{}
	var created, destroyed int
	e.churnClients(func(in ifmgr.Info) {
		mu.Lock()
		defer mu.Unlock()
		if live[in.Name] {
			t.Errorf("%s handed out twice", in.Name)
		}
		live[in.Name] = true
		created++
	}, func(c *api.Client, in ifmgr.Info) error {
		// Out of live before the destroy: once the daemon has freed it,
		// another client may get it at once.
		mu.Lock()
		delete(live, in.Name)
		destroyed++
		mu.Unlock()
		if err := c.Destroy(in.Name); err != nil {
			return fmt.Errorf("destroy %s: %w", in.Name, err)
		}
		return nil
	})
	// Every name a client holds is a bridge of the daemon's in the kernel
	// (a foreign link cannot have it: names are unique there).
	owned := kernelOwned(t, e.group)
	for name := range live {
		if l, ok := owned[name]; !ok || l.Kind != "bridge" {
			t.Errorf("%s confirmed to a client but the kernel's %s is %+v", name, name, l)
		}
	}
	ops := stop()
	t.Logf("intruder ran %s ip operations; clients created %d and destroyed %d; %d units held for foreign links at the end",
		ops, created, destroyed, e.status().Cloners[0].Held)
	e.checkAgree()

	if err := ip(t, "link", "delete", "group", fmt.Sprint(e.foreignGroup())); err != nil {
		t.Fatal(err)
	}
	e.checkFreeUnitsReused()
	e.checkDBMatchesKernel()
}
