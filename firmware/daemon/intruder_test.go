package daemon

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
)

// intruderScript is the second process: a shell loop of ip commands that,
// until its stop file appears, adds links with names in ifmgr's unit space
// (bridge0-bridge39), renames them within it and out of and back into it,
// and deletes them, at random. It touches only its own links (the foreign
// group, also used by the cleanup): what another process does to ifmgr's
// own links is another question (see docs/reliability.md, "faults").
const intruderScript = `
g=$1; stop=$2; n=0
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

// TestIntruderInUnitSpace runs the intruder while clients create and
// destroy bridges. No name is handed out twice or while a foreign link has
// it; DB and kernel agree; and once the intruder's links are gone, every
// unit comes back: the gaps below the highest unit in use are handed out
// again, lowest first, and no unit stays held.
func TestIntruderInUnitSpace(t *testing.T) {
	e := newEnv(t)
	e.start()
	stop := filepath.Join(e.dir, "intruder.stop")
	intruder := exec.Command("bash", "-c", intruderScript, "intruder", fmt.Sprint(e.foreignGroup()), stop)
	var ops strings.Builder
	intruder.Stdout = &ops
	if err := intruder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		os.WriteFile(stop, nil, 0o644)
		intruder.Wait()
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	live := map[string]bool{}
	var created, destroyed int
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client()
			var mine []string
			for i := range 40 {
				if i%3 == 2 && len(mine) > 0 { // now and then give one back
					name := mine[0]
					mine = mine[1:]
					// Out of live before the destroy: once the daemon
					// has freed it, another client may get it at once.
					mu.Lock()
					delete(live, name)
					destroyed++
					mu.Unlock()
					if err := c.Destroy(name); err != nil {
						t.Errorf("client %d: destroy %s: %v", w, name, err)
						return
					}
					continue
				}
				in, err := c.Create("bridge", "", 0)
				if err != nil {
					t.Errorf("client %d: create: %v", w, err)
					return
				}
				mu.Lock()
				if live[in.Name] {
					t.Errorf("%s handed out twice", in.Name)
				}
				live[in.Name] = true
				created++
				mu.Unlock()
				mine = append(mine, in.Name)
			}
		}()
	}
	wg.Wait()
	// Every name a client holds is a bridge of the daemon's in the kernel
	// (a foreign link cannot have it: names are unique there).
	owned := kernelOwned(t, e.group)
	for name := range live {
		if l, ok := owned[name]; !ok || l.Kind != "bridge" {
			t.Errorf("%s confirmed to a client but the kernel's %s is %+v", name, name, l)
		}
	}
	os.WriteFile(stop, nil, 0o644)
	if err := intruder.Wait(); err != nil {
		t.Fatalf("intruder: %v", err)
	}
	st := e.status()
	t.Logf("intruder ran %s ip operations; clients created %d and destroyed %d; %d units held for foreign links at the end",
		strings.TrimSpace(ops.String()), created, destroyed, st.Cloners[0].Held)
	e.checkAgree()

	if err := ip(t, "link", "delete", "group", fmt.Sprint(e.foreignGroup())); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return e.status().Cloners[0].Held == 0 })

	used := map[int]bool{}
	highest := -1
	for _, in := range e.checkAgree() {
		used[int(in.Unit)] = true
		highest = max(highest, int(in.Unit))
	}
	var gaps []string
	for u := range highest {
		if !used[u] {
			gaps = append(gaps, fmt.Sprintf("bridge%d", u))
		}
	}
	c := e.client()
	var again []string
	for range gaps {
		in, err := c.Create("bridge", "", 0)
		if err != nil {
			t.Fatal(err)
		}
		again = append(again, in.Name)
	}
	sort.Strings(gaps)
	sort.Strings(again)
	if !slices.Equal(gaps, again) {
		t.Errorf("after the intruder left, the free units below bridge%d were handed out as %v, want %v", highest, again, gaps)
	}
	t.Logf("%d units free below bridge%d after the intruder, all handed out again", len(gaps), highest)
	e.checkDBMatchesKernel()
}
