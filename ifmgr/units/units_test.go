package units

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
	"time"
)

func mustAlloc(t *testing.T, a *Allocator, us ...uint32) {
	t.Helper()
	for _, u := range us {
		if err := a.Alloc(u); err != nil {
			t.Fatalf("setup Alloc(%d): %v", u, err)
		}
	}
}

func mustHold(t *testing.T, a *Allocator, us ...uint32) {
	t.Helper()
	for _, u := range us {
		if err := a.Hold(u); err != nil {
			t.Fatalf("setup Hold(%d): %v", u, err)
		}
	}
}

func TestErrors(t *testing.T) {
	const top = math.MaxUint32
	tests := []struct {
		name  string
		max   uint32
		setup func(t *testing.T, a *Allocator)
		op    func(a *Allocator) error
		want  error
		unit  string // must appear in the error text
	}{
		{"alloc past max", 10, nil, func(a *Allocator) error { return a.Alloc(11) }, ErrRange, "unit 11"},
		{"alloc far past max", 10, nil, func(a *Allocator) error { return a.Alloc(top) }, ErrRange, "unit 4294967295"},
		{"alloc past max whose name is held", 10,
			func(t *testing.T, a *Allocator) { mustHold(t, a, 11) }, // ignored, but the order must not depend on it
			func(a *Allocator) error { return a.Alloc(11) }, ErrRange, "unit 11"},
		{"alloc allocated", 10,
			func(t *testing.T, a *Allocator) { mustAlloc(t, a, 4) },
			func(a *Allocator) error { return a.Alloc(4) }, ErrExists, "unit 4"},
		{"alloc held", 10,
			func(t *testing.T, a *Allocator) { mustHold(t, a, 4) },
			func(a *Allocator) error { return a.Alloc(4) }, ErrHeld, "unit 4"},
		{"alloc at max", 10, nil, func(a *Allocator) error { return a.Alloc(10) }, nil, ""},
		{"alloc after free", 10,
			func(t *testing.T, a *Allocator) {
				mustAlloc(t, a, 4)
				if err := a.Free(4); err != nil {
					t.Fatal(err)
				}
			},
			func(a *Allocator) error { return a.Alloc(4) }, nil, ""},
		{"alloc after release", 10,
			func(t *testing.T, a *Allocator) { mustHold(t, a, 4); a.Release(4) },
			func(a *Allocator) error { return a.Alloc(4) }, nil, ""},
		{"wildcard with all allocated", 3,
			func(t *testing.T, a *Allocator) { mustAlloc(t, a, 0, 1, 2, 3) },
			func(a *Allocator) error { _, err := a.AllocLowest(); return err }, ErrRange, "0-3"},
		{"wildcard with all held", 3,
			func(t *testing.T, a *Allocator) { mustHold(t, a, 0, 1, 2, 3) },
			func(a *Allocator) error { _, err := a.AllocLowest(); return err }, ErrRange, "0-3"},
		{"wildcard with all allocated or held", 3,
			func(t *testing.T, a *Allocator) { mustAlloc(t, a, 0, 2); mustHold(t, a, 1, 3) },
			func(a *Allocator) error { _, err := a.AllocLowest(); return err }, ErrRange, "0-3"},
		{"free unallocated", 10, nil, func(a *Allocator) error { return a.Free(3) }, ErrNotAllocated, "unit 3"},
		{"free past max", 10, nil, func(a *Allocator) error { return a.Free(11) }, ErrNotAllocated, "unit 11"},
		{"free MaxUint32", 10, nil, func(a *Allocator) error { return a.Free(top) }, ErrNotAllocated, "unit 4294967295"},
		{"free held", 10,
			func(t *testing.T, a *Allocator) { mustHold(t, a, 3) },
			func(a *Allocator) error { return a.Free(3) }, ErrNotAllocated, "unit 3"},
		{"double free", 10,
			func(t *testing.T, a *Allocator) {
				mustAlloc(t, a, 3)
				if err := a.Free(3); err != nil {
					t.Fatal(err)
				}
			},
			func(a *Allocator) error { return a.Free(3) }, ErrNotAllocated, "unit 3"},
		{"hold allocated", 10,
			func(t *testing.T, a *Allocator) { mustAlloc(t, a, 5) },
			func(a *Allocator) error { return a.Hold(5) }, ErrExists, "unit 5"},
		{"hold twice", 10,
			func(t *testing.T, a *Allocator) { mustHold(t, a, 5) },
			func(a *Allocator) error { return a.Hold(5) }, nil, ""},
		{"hold past max", 10, nil, func(a *Allocator) error { return a.Hold(11) }, nil, ""},
		{"hold MaxUint32 past max", 10, nil, func(a *Allocator) error { return a.Hold(top) }, nil, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			a := New(tc.max)
			if tc.setup != nil {
				tc.setup(t, a)
			}
			beforeA, beforeH := a.Allocated(), a.HeldCount()
			err := tc.op(a)
			checkErr(t, tc.name, err, tc.want, tc.unit)
			if tc.want != nil && (a.Allocated() != beforeA || a.HeldCount() != beforeH) {
				t.Fatalf("failed op changed counts: allocated %d->%d, held %d->%d",
					beforeA, a.Allocated(), beforeH, a.HeldCount())
			}
			checkInvariants(t, a)
		})
	}
}

func TestHoldPastMaxIsIgnored(t *testing.T) {
	a := New(10)
	mustHold(t, a, 11, 12, math.MaxUint32)
	if a.HeldCount() != 0 || a.IsHeld(11) || a.Runs() != 0 {
		t.Fatalf("units past max were recorded: held=%d IsHeld(11)=%v runs=%d",
			a.HeldCount(), a.IsHeld(11), a.Runs())
	}
}

func TestHoldIsIdempotent(t *testing.T) {
	a := New(10)
	mustHold(t, a, 3, 3, 3)
	if a.HeldCount() != 1 {
		t.Fatalf("HeldCount = %d after holding 3 thrice, want 1", a.HeldCount())
	}
	// A single Release must undo any number of Holds.
	a.Release(3)
	if a.IsHeld(3) || a.HeldCount() != 0 {
		t.Fatal("unit 3 still held after Release")
	}
	checkInvariants(t, a)
}

func TestReleaseNotHeldIsNoop(t *testing.T) {
	a := New(10)
	mustAlloc(t, a, 2)
	a.Release(2)  // allocated, not held: must not free it
	a.Release(7)  // nothing
	a.Release(11) // past max
	a.Release(math.MaxUint32)
	if !a.IsAllocated(2) || a.Allocated() != 1 || a.HeldCount() != 0 {
		t.Fatalf("Release of non-held units changed state: allocated(2)=%v n=%d held=%d",
			a.IsAllocated(2), a.Allocated(), a.HeldCount())
	}
	checkInvariants(t, a)
}

func lowest(t *testing.T, a *Allocator) uint32 {
	t.Helper()
	u, err := a.AllocLowest()
	if err != nil {
		t.Fatalf("AllocLowest: %v", err)
	}
	return u
}

func TestWildcardSkipsHeld(t *testing.T) {
	a := New(100)
	mustHold(t, a, 0, 1, 3)
	mustAlloc(t, a, 4)
	got := []uint32{lowest(t, a), lowest(t, a), lowest(t, a)}
	if want := []uint32{2, 5, 6}; !slices.Equal(got, want) {
		t.Fatalf("AllocLowest sequence = %v, want %v", got, want)
	}
	checkInvariants(t, a)
}

// The FreeBSD leak: a foreign bridge5 made the allocator skip 5 forever.
// Here 5 comes back as the lowest unit as soon as the foreign name goes.
func TestReleaseReturnsSkippedUnit(t *testing.T) {
	a := New(100)
	for range 5 {
		lowest(t, a)
	}
	mustHold(t, a, 5)
	if u := lowest(t, a); u != 6 {
		t.Fatalf("AllocLowest with 5 held = %d, want 6", u)
	}
	a.Release(5)
	if u := lowest(t, a); u != 5 {
		t.Fatalf("AllocLowest after Release(5) = %d, want 5", u)
	}
	if u := lowest(t, a); u != 7 {
		t.Fatalf("next AllocLowest = %d, want 7", u)
	}
	// 0..7 allocated and nothing held: one run, nothing leaked.
	if a.Allocated() != 8 || a.HeldCount() != 0 || a.Runs() != 1 {
		t.Fatalf("allocated=%d held=%d runs=%d, want 8, 0, 1", a.Allocated(), a.HeldCount(), a.Runs())
	}
	checkInvariants(t, a)
}

func TestFreeThenLowest(t *testing.T) {
	a := New(100)
	for range 10 {
		lowest(t, a)
	}
	if err := a.Free(4); err != nil {
		t.Fatal(err)
	}
	if a.Runs() != 2 {
		t.Fatalf("Runs = %d after punching a hole, want 2", a.Runs())
	}
	if u := lowest(t, a); u != 4 {
		t.Fatalf("AllocLowest = %d, want the freed 4", u)
	}
	if a.Runs() != 1 {
		t.Fatalf("Runs = %d after refilling the hole, want 1", a.Runs())
	}
}

func TestMaxZero(t *testing.T) {
	a := New(0)
	if a.Max() != 0 {
		t.Fatalf("Max = %d", a.Max())
	}
	if u := lowest(t, a); u != 0 {
		t.Fatalf("AllocLowest = %d, want 0", u)
	}
	_, err := a.AllocLowest()
	checkErr(t, "AllocLowest when full", err, ErrRange, "")
	checkErr(t, "Alloc(1)", a.Alloc(1), ErrRange, "unit 1")
	checkErr(t, "Alloc(0)", a.Alloc(0), ErrExists, "unit 0")
	checkErr(t, "Hold(0) while allocated", a.Hold(0), ErrExists, "unit 0")
	checkErr(t, "Hold(1)", a.Hold(1), nil, "")
	if a.IsHeld(1) {
		t.Fatal("unit 1 past max recorded as held")
	}
	checkErr(t, "Free(1)", a.Free(1), ErrNotAllocated, "unit 1")
	checkErr(t, "Free(0)", a.Free(0), nil, "")
	checkErr(t, "Hold(0)", a.Hold(0), nil, "")
	_, err = a.AllocLowest()
	checkErr(t, "AllocLowest when held", err, ErrRange, "")
	checkErr(t, "Alloc(0) when held", a.Alloc(0), ErrHeld, "unit 0")
	a.Release(0)
	if u := lowest(t, a); u != 0 {
		t.Fatalf("AllocLowest after Release = %d, want 0", u)
	}
	checkInvariants(t, a)
}

// plant puts the whole run [lo, hi] into s in one step, standing in for the
// billions of calls it would take to get there through the API.
func plant(t *testing.T, s *intervalSet, lo, hi uint32) {
	t.Helper()
	if l, ok := s.lowestAbsent(lo); !ok || l != lo || s.tree.Len() != 0 {
		t.Fatalf("plant needs an empty set")
	}
	s.tree.ReplaceOrInsert(span{lo, hi})
	s.n += uint64(hi) - uint64(lo) + 1
}

func TestMaxUint32(t *testing.T) {
	const top = math.MaxUint32
	a := New(top)
	if a.Max() != top {
		t.Fatalf("Max = %d", a.Max())
	}
	// The top unit, alone and then merged with its neighbour from below.
	mustAlloc(t, a, top)
	if !a.IsAllocated(top) || a.IsAllocated(0) {
		t.Fatal("Alloc(MaxUint32) recorded wrongly")
	}
	mustAlloc(t, a, top-1)
	if a.Runs() != 1 {
		t.Fatalf("Runs = %d, want [top-1, top] as one run", a.Runs())
	}
	if got, want := collect(a.EachAllocated), []uint32{top - 1, top}; !slices.Equal(got, want) {
		t.Fatalf("EachAllocated = %v, want %v", got, want)
	}
	checkErr(t, "Alloc(top) again", a.Alloc(top), ErrExists, "unit 4294967295")
	checkErr(t, "Hold(top)", a.Hold(top), ErrExists, "unit 4294967295")
	checkErr(t, "Free(top)", a.Free(top), nil, "")
	checkErr(t, "Hold(top)", a.Hold(top), nil, "")
	if got := collect(a.EachHeld); !slices.Equal(got, []uint32{top}) {
		t.Fatalf("EachHeld = %v", got)
	}
	checkErr(t, "Alloc(top) held", a.Alloc(top), ErrHeld, "unit 4294967295")
	checkInvariants(t, a)
	a.Release(top)
	checkErr(t, "Free(top-1)", a.Free(top-1), nil, "")
	checkInvariants(t, a)

	// Exhaust the whole 32-bit space and make sure the wildcard search
	// reports ErrRange rather than wrapping around to 0.
	a = New(top)
	plant(t, a.allocated, 0, top-2)
	plant(t, a.used, 0, top-2)
	mustHold(t, a, top)
	if u := lowest(t, a); u != top-1 {
		t.Fatalf("AllocLowest = %d, want %d", u, uint32(top-1))
	}
	if a.Runs() != 2 || a.used.runs() != 1 {
		t.Fatalf("runs = %d, used runs = %d; want 2 and 1", a.Runs(), a.used.runs())
	}
	_, err := a.AllocLowest()
	checkErr(t, "AllocLowest with every unit taken", err, ErrRange, "0-4294967295")
	checkInvariants(t, a)
	a.Release(top)
	if u := lowest(t, a); u != top {
		t.Fatalf("AllocLowest = %d, want MaxUint32", u)
	}
	_, err = a.AllocLowest()
	checkErr(t, "AllocLowest with every unit allocated", err, ErrRange, "")
	if strconv.IntSize == 64 && uint64(a.Allocated()) != 1<<32 {
		t.Fatalf("Allocated = %d, want 2^32", a.Allocated())
	}
	// Early stop must work on a run that would otherwise take forever.
	var first []uint32
	a.EachAllocated(func(u uint32) bool {
		first = append(first, u)
		return len(first) < 3
	})
	if !slices.Equal(first, []uint32{0, 1, 2}) {
		t.Fatalf("EachAllocated with early stop = %v", first)
	}
	checkErr(t, "Free(0)", a.Free(0), nil, "")
	checkErr(t, "Free(top)", a.Free(top), nil, "")
	checkInvariants(t, a)
	if u := lowest(t, a); u != 0 {
		t.Fatalf("AllocLowest = %d, want 0", u)
	}
	if u := lowest(t, a); u != top {
		t.Fatalf("AllocLowest = %d, want MaxUint32", u)
	}
	checkInvariants(t, a)
}

func TestEachStopsEarly(t *testing.T) {
	a := New(100)
	mustAlloc(t, a, 1, 2, 3, 10, 11)
	mustHold(t, a, 5, 6, 20)
	var got []uint32
	a.EachAllocated(func(u uint32) bool {
		got = append(got, u)
		return u != 3
	})
	if !slices.Equal(got, []uint32{1, 2, 3}) {
		t.Fatalf("EachAllocated stopped at %v, want [1 2 3]", got)
	}
	got = nil
	a.EachHeld(func(u uint32) bool {
		got = append(got, u)
		return len(got) < 2
	})
	if !slices.Equal(got, []uint32{5, 6}) {
		t.Fatalf("EachHeld stopped at %v, want [5 6]", got)
	}
	if all := collect(a.EachHeld); !slices.Equal(all, []uint32{5, 6, 20}) {
		t.Fatalf("EachHeld = %v", all)
	}
}

func TestRunsContiguous(t *testing.T) {
	const n = 1_000_000
	a := New(bigMax)
	for i := range n {
		if u := lowest(t, a); u != uint32(i) {
			t.Fatalf("AllocLowest = %d, want %d", u, i)
		}
	}
	if a.Runs() != 1 || a.used.runs() != 1 || a.Allocated() != n {
		t.Fatalf("runs = %d, used runs = %d, allocated = %d; want 1, 1, %d",
			a.Runs(), a.used.runs(), a.Allocated(), n)
	}
	checkInvariants(t, a)
}

// bigMax leaves room for a million units, contiguous or alternating.
const bigMax = 4_000_000

func TestRunsAlternating(t *testing.T) {
	const n = 1_000_000
	a := New(bigMax)
	for i := range n {
		mustAlloc(t, a, uint32(2*i))
	}
	if a.Runs() != n {
		t.Fatalf("Runs = %d for %d alternating units, want %d", a.Runs(), n, n)
	}
	if u := lowest(t, a); u != 1 {
		t.Fatalf("AllocLowest = %d, want 1", u)
	}
	if a.Runs() != n-1 {
		t.Fatalf("Runs = %d after filling the first gap, want %d", a.Runs(), n-1)
	}
	checkInvariants(t, a)
}

// Allocated and held units interleaved: the used set must be one run, so the
// wildcard search is a single lookup and not a walk across 2n runs.
func TestUsedCoalescesAcrossSets(t *testing.T) {
	const n = 100_000
	a := New(bigMax)
	for i := range n {
		mustAlloc(t, a, uint32(2*i))
		mustHold(t, a, uint32(2*i+1))
	}
	if a.Runs() != 2*n || a.used.runs() != 1 {
		t.Fatalf("Runs = %d, used runs = %d; want %d and 1", a.Runs(), a.used.runs(), 2*n)
	}
	if u := lowest(t, a); u != 2*n {
		t.Fatalf("AllocLowest = %d, want %d", u, 2*n)
	}
	a.Release(7)
	if u := lowest(t, a); u != 7 {
		t.Fatalf("AllocLowest after Release(7) = %d, want 7", u)
	}
	checkInvariants(t, a)
}

// randomOps drives h with ops biased toward filling or draining the pool in
// alternating phases, so both "full" and "empty" conditions keep recurring.
func randomOps(h *harness, r *rand.Rand, ops int) {
	max := h.m.max
	for i := range ops {
		fill := (i/1500)%2 == 0
		var op int
		switch p := r.IntN(100); {
		case p < 25:
			op = opAllocLowest
		case p < 45:
			op = opAlloc
		case p < 65:
			op = opFree
			if fill && r.IntN(2) == 0 {
				op = opAlloc
			}
		case p < 80:
			op = opHold
		default:
			op = opRelease
			if fill && r.IntN(3) == 0 {
				op = opHold
			}
		}
		if !fill && (op == opAllocLowest || op == opAlloc) && r.IntN(2) == 0 {
			op = opFree
		}
		var u uint32
		switch p := r.IntN(100); {
		case p < 90:
			u = r.Uint32N(max + 1)
		case p < 97:
			u = max + 1 + r.Uint32N(8)
		default:
			u = math.MaxUint32 - r.Uint32N(2)
		}
		h.do(op, u)
		if h.steps%50 == 0 {
			h.checkAgainstModel()
		}
	}
	h.checkAgainstModel()
}

func TestRandomAgainstModel(t *testing.T) {
	seeds := []uint64{1, 2, 3, 42, 0xdecafbad, uint64(time.Now().UnixNano())}
	t.Logf("time seed: %d", seeds[len(seeds)-1])
	for _, seed := range seeds {
		for _, max := range []uint32{200, 7} {
			t.Run(strconv.FormatUint(seed, 10)+"/max="+strconv.Itoa(int(max)), func(t *testing.T) {
				h := newHarness(t, max)
				randomOps(h, rand.New(rand.NewPCG(seed, uint64(max))), 25_000)
				// The run is only meaningful if every outcome was exercised.
				for _, k := range []outcome{
					{opAllocLowest, nil}, {opAllocLowest, ErrRange},
					{opAlloc, nil}, {opAlloc, ErrRange}, {opAlloc, ErrExists}, {opAlloc, ErrHeld},
					{opFree, nil}, {opFree, ErrNotAllocated},
					{opHold, nil}, {opHold, ErrExists},
					{opRelease, nil},
				} {
					if h.outcomes[k] == 0 {
						t.Errorf("%s -> %v never happened in %d ops", opNames[k.op], k.err, h.steps)
					}
				}
			})
		}
	}
}

// Errors must work with errors.Is through the unit wrapping and never be
// confused with each other.
func TestSentinelsDistinct(t *testing.T) {
	for i, a := range sentinels {
		for j, b := range sentinels {
			if (i == j) != errors.Is(a, b) {
				t.Fatalf("errors.Is(%v, %v) = %v", a, b, i != j)
			}
		}
	}
}
