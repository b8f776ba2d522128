package ifmgr

import (
	"fmt"
	"testing"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/internal/benchkit"
)

// BenchmarkStartupBringUp1000 is ifmgrd's own work in a profile-driven
// bring-up of 1000 ports, each in a bridge of its own (scripts/bench's
// bring-up row), with the kernel and the DB faked: startup's dump, settle
// and full plan, the reservations, and the bookkeeping of the creates,
// joins and aliases. It is the part of the bring-up that runs before the
// first request and between batches, where the kernel waits for ifmgrd.
func BenchmarkStartupBringUp1000(b *testing.B) {
	const ports = 1000
	was := checkPlans
	checkPlans = false // the tests' cross-check plans everything twice
	defer func() { checkPlans = was }()
	for b.Loop() {
		b.StopTimer()
		k, s := newFakeKernel(), newFakeStore()
		k.muted = true // no watcher: what is measured is the startup alone
		for i := range ports {
			k.add(kernel.Link{Name: fmt.Sprintf("lan%d", i), Kind: "veth", MAC: mac(fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff))})
		}
		p, err := board.Parse("bench.toml", []byte(benchkit.PerPortProfile))
		if err != nil {
			b.Fatal(err)
		}
		m, err := New(Config{Kernel: k, Store: s, Cloners: testCloners(b, DefaultMaxUnit), Profile: p, Logger: quietLogger(), ResyncTick: -1,
			Facts: func(string) (string, string) { return "", "" }})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		if err := m.startup(); err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if n := m.entries.len(); n != ports {
			b.Fatalf("%d interfaces managed, want %d", n, ports)
		}
		b.StartTimer()
	}
}
