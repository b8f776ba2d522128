package units

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

var benchSizes = []int{10, 10_000, 1_000_000}

// randomUnits precomputes the units a benchmark touches so the random
// generator stays out of the measurement. The length is a power of two so the
// index wraps with a mask.
func randomUnits(n int, unit func(i int) uint32) []uint32 {
	r := rand.New(rand.NewPCG(1, uint64(n)))
	us := make([]uint32, 1<<12)
	for i := range us {
		us[i] = unit(r.IntN(n))
	}
	return us
}

// BenchmarkAllocFree measures one allocate/free pair against allocators
// already holding n units. Every pair leaves the allocator as it found it,
// so each allocator is built once per size and reused across b.N rounds.
func BenchmarkAllocFree(b *testing.B) {
	contiguous := func(b *testing.B, n int) *Allocator {
		a := New(uint32(2*n + 10))
		for range n {
			if _, err := a.AllocLowest(); err != nil {
				b.Fatal(err)
			}
		}
		return a
	}
	// Every other unit: n runs, the largest tree n units can make.
	fragmented := func(b *testing.B, n int) *Allocator {
		a := New(uint32(2*n + 10))
		for i := range n {
			if err := a.Alloc(uint32(2 * i)); err != nil {
				b.Fatal(err)
			}
		}
		return a
	}

	// lowest: the wildcard path. The new unit extends the single run.
	b.Run("lowest", func(b *testing.B) {
		for _, n := range benchSizes {
			a := contiguous(b, n)
			b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					u, err := a.AllocLowest()
					if err != nil {
						b.Fatal(err)
					}
					if err := a.Free(u); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})

	// hole: free a random unit inside the run (splitting it) and allocate it
	// back by number (merging the two halves again).
	b.Run("hole", func(b *testing.B) {
		for _, n := range benchSizes {
			a := contiguous(b, n)
			us := randomUnits(n, func(i int) uint32 { return uint32(i) })
			b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					u := us[i&(len(us)-1)]
					i++
					if err := a.Free(u); err != nil {
						b.Fatal(err)
					}
					if err := a.Alloc(u); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})

	// fragmented: n single-unit runs. Free deletes a random run from the
	// big tree and Alloc inserts it again.
	b.Run("fragmented", func(b *testing.B) {
		for _, n := range benchSizes {
			a := fragmented(b, n)
			us := randomUnits(n, func(i int) uint32 { return uint32(2 * i) })
			b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					u := us[i&(len(us)-1)]
					i++
					if err := a.Free(u); err != nil {
						b.Fatal(err)
					}
					if err := a.Alloc(u); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})

	// fragmented-lowest: the wildcard fills the first gap, merging three runs
	// into one, and Free splits them again.
	b.Run("fragmented-lowest", func(b *testing.B) {
		for _, n := range benchSizes {
			a := fragmented(b, n)
			b.Run(fmt.Sprintf("n=%d", n), func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					u, err := a.AllocLowest()
					if err != nil {
						b.Fatal(err)
					}
					if err := a.Free(u); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	})
}
