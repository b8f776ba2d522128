package plan

import (
	"fmt"
	"runtime"
	"testing"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/internal/benchkit"
)

// convergedPorts is a kernel with n veth-like ports lanI (no permanent MAC),
// each in the bridge profile p derives for it, and the bridges: the state
// after a bring-up, which a carrier flap leaves as it is.
func convergedPorts(p *board.Profile, n int) []Link {
	var links []Link
	for i := range n {
		links = append(links, Link{Index: uint32(100 + i), Name: fmt.Sprintf("lan%d", i), MAC: fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff), Up: true, Enslaved: true})
	}
	pl := Compute(p, links)
	next := uint32(100 + n)
	byKey := map[string]uint32{}
	for _, a := range pl.Actions {
		if a.Kind != Create {
			continue
		}
		byKey[a.Target.Key()] = next
		links = append(links, Link{Index: next, Name: fmt.Sprintf("bridge%d", next), Kind: "bridge", Owned: true, Identity: a.Target.Identity, Up: true})
		next++
	}
	for _, a := range pl.Actions {
		if a.Kind == SetMaster {
			links[a.Link-100].Master = byKey[a.Master]
		}
	}
	return links
}

var benchProfiles = []struct{ name, text string }{
	{"per-port", benchkit.PerPortProfile},
	{"shared", benchkit.SharedProfile},
}

// BenchmarkPlan800 is the planner's work for one event at 800 ports: the
// full plan over every link.
func BenchmarkPlan800(b *testing.B) {
	for _, bp := range benchProfiles {
		p, links := benchSetup(b, bp.name, bp.text, 800)
		b.Run(bp.name+"/full", func(b *testing.B) {
			for range b.N {
				Compute(p, links)
			}
		})
	}
}

// BenchmarkPlan800Incremental is the same work as BenchmarkPlan800 for the
// event of one port going administratively down (or up), told to the
// planner as ifmgr does (Planner.Apply with the one link named, the others
// read from the owner's table): it replans what that port's change
// reaches. (An event that changes nothing the planner reads, a carrier
// flap, is not named to it: ifmgr's link table sees that.)
func BenchmarkPlan800Incremental(b *testing.B) {
	for _, bp := range benchProfiles {
		p, links := benchSetup(b, bp.name, bp.text, 800)
		up, down := links[400], links[400]
		down.Up = false
		upTable, downTable := indexLinks(links), indexLinks(links)
		downTable[down.Index] = down
		b.Run(bp.name+"/port-flap", func(b *testing.B) {
			var pr Planner
			pr.Full(p, links)
			for i := range b.N {
				if i%2 == 0 {
					pr.Apply(p, downTable, []uint32{down.Index})
				} else {
					pr.Apply(p, upTable, []uint32{up.Index})
				}
			}
		})
	}
}

// BenchmarkPlan800Echoes is the first event round after a bring-up at 800
// ports: every link named as changed (the ports joined and up, the bridges
// new), which the planner plans in full without its graph.
func BenchmarkPlan800Echoes(b *testing.B) {
	for _, bp := range benchProfiles {
		p, links := benchSetup(b, bp.name, bp.text, 800)
		table := indexLinks(links)
		all := make([]uint32, 0, len(links))
		for _, l := range links {
			all = append(all, l.Index)
		}
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			var pr Planner
			for range b.N {
				pr.Full(p, links[:800]) // the ports alone, as at startup
				pr.Apply(p, table, all)
			}
		})
	}
}

// BenchmarkPlan800Full is a full plan through the Planner (a resync's):
// Compute plus what the next Apply needs.
func BenchmarkPlan800Full(b *testing.B) {
	for _, bp := range benchProfiles {
		p, links := benchSetup(b, bp.name, bp.text, 800)
		b.Run(bp.name, func(b *testing.B) {
			var pr Planner
			for range b.N {
				pr.Full(p, links)
			}
		})
	}
}

// BenchmarkPlanner4000Retained is what a Planner keeps at 4000 ports after a
// full plan and one event (so with its dependency graph): retained-B is the
// live heap it holds (runtime.ReadMemStats after a GC, the links given to it
// and the owner's table excluded), which ifmgrd's RSS is a multiple of. The time is the full plan
// plus the first event's graph.
func BenchmarkPlanner4000Retained(b *testing.B) {
	for _, bp := range benchProfiles {
		p, links := benchSetup(b, bp.name, bp.text, 4000)
		down := links[2000]
		down.Up = false
		table := indexLinks(links) // the owner's, not the planner's
		table[down.Index] = down
		b.Run(bp.name, func(b *testing.B) {
			b.ReportAllocs()
			var retained uint64
			for range b.N {
				var before, after runtime.MemStats
				runtime.GC()
				runtime.ReadMemStats(&before)
				pr := new(Planner)
				pr.Full(p, links)
				pr.Apply(p, table, []uint32{down.Index})
				runtime.GC()
				runtime.ReadMemStats(&after)
				retained += after.HeapAlloc - before.HeapAlloc
				runtime.KeepAlive(pr)
			}
			b.ReportMetric(float64(retained)/float64(b.N), "retained-B")
		})
	}
}

// benchSetup parses a bench profile and gives n ports in the state its
// plan leaves them (a converged router), checked to plan nothing.
func benchSetup(b *testing.B, name, text string, n int) (*board.Profile, []Link) {
	b.Helper()
	p, err := board.Parse("bench.toml", []byte(text))
	if err != nil {
		b.Fatal(err)
	}
	links := convergedPorts(p, n)
	if pl := Compute(p, links); len(pl.Actions) != 0 {
		b.Fatalf("%s: not converged: %v", name, pl.Actions)
	}
	return p, links
}
