package ifmgr

import (
	"fmt"
	"testing"

	"github.com/uroute/uroute/ifmgr/kernel"
)

const perPortProfile = `
board = "test"
[[port]]
name = "lan"
match.name = "eth*"
bridge = "lan"
[[bridge]]
name = "lan"
per_port = true
`

// A burst of ifmgr's own echoes is not read back: a link whose last event
// agrees with the link table is not asked for again. A foreign change in
// the same burst is read back and repaired, and so is a stale event (one
// older than what the applier recorded): it is read back, not trusted, so
// it undoes nothing.
func TestEchoesNotReadBackForeignChangeRepaired(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	const ports = 8
	eth := make([]kernel.Link, ports)
	for i := range eth {
		eth[i], _ = k.add(kernel.Link{Name: fmt.Sprintf("eth%d", i), MAC: mac(fmt.Sprintf("02:00:00:00:00:%02x", i))})
	}
	h := startWithProfile(t, k, s, mustProfile(t, perPortProfile))
	h.settle()
	bridgeOf := map[uint32]uint32{}
	for _, p := range eth {
		l, _ := k.LinkByIndex(p.Index)
		if l.Master == 0 || l.Flags&iffUp == 0 {
			t.Fatalf("%s not up in a bridge after bring-up: %+v", l.Name, l)
		}
		bridgeOf[p.Index] = l.Master
	}

	// The owner stops; the test is the owner now and hands it one burst:
	// the echo of every link as the kernel has it (what ifmgr's own work
	// sends), eth5's echo from before its join (older than the table),
	// and a foreign process taking eth3 out of its bridge and down.
	h.stop()
	k.mu.Lock()
	var burst []kernel.Event
	for _, l := range k.links {
		burst = append(burst, kernel.Event{Type: kernel.EventNew, Link: l})
	}
	stale := k.links[eth[5].Index]
	stale.Master, stale.Flags = 0, 0
	burst = append(burst, kernel.Event{Type: kernel.EventNew, Link: stale})
	gets, dumps, masters := k.gets, k.dumps, k.masters
	k.mu.Unlock()
	k.modify(eth[3].Index, func(l *kernel.Link) { l.Master, l.Flags = 0, 0 })
	k.mu.Lock()
	foreign := k.links[eth[3].Index]
	k.mu.Unlock()
	burst = append(burst, kernel.Event{Type: kernel.EventNew, Link: foreign})

	h.m.handleEvents(burst)

	k.mu.Lock()
	gets, dumps, masters = k.gets-gets, k.dumps-dumps, k.masters-masters
	k.mu.Unlock()
	if dumps != 0 || gets != 2 {
		t.Errorf("a burst of %d links' echoes, one stale and one foreign change: %d gets, %d dumps; want 2 gets (eth3, eth5)", len(k.links), gets, dumps)
	}
	if masters != 1 {
		t.Errorf("%d joins after the burst, want 1 (eth3's repair; eth5 is in its bridge)", masters)
	}
	for _, i := range []int{3, 5} {
		l, _ := k.LinkByIndex(eth[i].Index)
		if l.Master != bridgeOf[l.Index] || l.Flags&iffUp == 0 {
			t.Errorf("%s after the burst: master %d (want %d), flags %#x (want up)", l.Name, l.Master, bridgeOf[l.Index], l.Flags)
		}
		if have, _ := h.m.links.get(l.Index); !have.Equal(l) {
			t.Errorf("%s: the table holds %+v, the kernel %+v", l.Name, have, l)
		}
	}
}
