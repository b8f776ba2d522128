package units

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Unit states in the reference model.
const (
	stFree uint8 = iota
	stAllocated
	stHeld
)

// model is the obviously correct reference: a map from unit to state and
// linear scans. It is slow on purpose; only its simplicity matters.
type model struct {
	max   uint32
	state map[uint32]uint8
	nA    int
	nH    int
}

func newModel(max uint32) *model {
	return &model{max: max, state: map[uint32]uint8{}}
}

func (m *model) allocLowest() (uint32, error) {
	// Terminates within len(state)+1 steps, so it can neither wrap nor run
	// for long even when max is MaxUint32.
	for u := uint32(0); ; u++ {
		if u > m.max {
			return 0, ErrRange
		}
		if m.state[u] == stFree {
			m.state[u] = stAllocated
			m.nA++
			return u, nil
		}
		if u == math.MaxUint32 {
			return 0, ErrRange
		}
	}
}

func (m *model) alloc(u uint32) error {
	switch {
	case u > m.max:
		return ErrRange
	case m.state[u] == stAllocated:
		return ErrExists
	case m.state[u] == stHeld:
		return ErrHeld
	}
	m.state[u] = stAllocated
	m.nA++
	return nil
}

func (m *model) free(u uint32) error {
	if m.state[u] != stAllocated {
		return ErrNotAllocated
	}
	delete(m.state, u)
	m.nA--
	return nil
}

func (m *model) hold(u uint32) error {
	switch {
	case u > m.max:
		return nil
	case m.state[u] == stAllocated:
		return ErrExists
	case m.state[u] == stHeld:
		return nil
	}
	m.state[u] = stHeld
	m.nH++
	return nil
}

func (m *model) release(u uint32) {
	if m.state[u] == stHeld {
		delete(m.state, u)
		m.nH--
	}
}

func (m *model) sorted(st uint8) []uint32 {
	var out []uint32
	for u, s := range m.state {
		if s == st {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return out
}

var sentinels = []error{ErrRange, ErrExists, ErrHeld, ErrNotAllocated}

// checkErr insists on exactly the expected sentinel (so "ErrExists, not
// ErrHeld" is really checked) and on the unit being named in the message.
func checkErr(tb testing.TB, what string, got, want error, unit string) {
	tb.Helper()
	if want == nil {
		if got != nil {
			tb.Fatalf("%s: got error %v, want nil", what, got)
		}
		return
	}
	if got == nil {
		tb.Fatalf("%s: got nil, want %v", what, want)
	}
	for _, s := range sentinels {
		if errors.Is(got, s) != (s == want) {
			tb.Fatalf("%s: got %v, want %v", what, got, want)
		}
	}
	if unit != "" && !strings.Contains(got.Error(), unit) {
		tb.Fatalf("%s: error %q does not mention %q", what, got, unit)
	}
}

// Operations understood by harness.do.
const (
	opAllocLowest = iota
	opAlloc
	opFree
	opHold
	opRelease
	numOps
)

var opNames = [...]string{"AllocLowest", "Alloc", "Free", "Hold", "Release"}

// outcome is an (operation, expected sentinel) pair; err is nil for success.
type outcome struct {
	op  int
	err error
}

// harness runs the same operation on an Allocator and on the model and
// checks every result. outcomes counts what happened so tests can assert
// that the interesting paths were actually taken. Messages are only built
// on failure: the fuzzer runs this millions of times.
type harness struct {
	tb       testing.TB
	a        *Allocator
	m        *model
	steps    int
	outcomes map[outcome]int
}

func newHarness(tb testing.TB, max uint32) *harness {
	return &harness{tb: tb, a: New(max), m: newModel(max), outcomes: map[outcome]int{}}
}

// errMatches is the allocation-free happy path of checkErr.
func errMatches(got, want error, unitPrefix func() string) bool {
	if want == nil || got == nil {
		return got == want
	}
	for _, s := range sentinels {
		if errors.Is(got, s) != (s == want) {
			return false
		}
	}
	return unitPrefix == nil || strings.HasPrefix(got.Error(), unitPrefix())
}

func (h *harness) do(op int, u uint32) {
	h.tb.Helper()
	h.steps++
	what := func() string {
		if op == opAllocLowest {
			return fmt.Sprintf("step %d: AllocLowest() max=%d", h.steps, h.m.max)
		}
		return fmt.Sprintf("step %d: %s(%d) max=%d", h.steps, opNames[op], u, h.m.max)
	}
	unitPrefix := func() string { return "unit " + strconv.FormatUint(uint64(u), 10) + ":" }
	check := func(got, want error) {
		h.tb.Helper()
		if !errMatches(got, want, unitPrefix) {
			checkErr(h.tb, what(), got, want, unitPrefix())
		}
	}
	var want error
	switch op {
	case opAllocLowest:
		wu, werr := h.m.allocLowest()
		gu, gerr := h.a.AllocLowest()
		if !errMatches(gerr, werr, nil) {
			checkErr(h.tb, what(), gerr, werr, "")
		}
		if werr == nil && gu != wu {
			h.tb.Fatalf("%s: got unit %d, want %d", what(), gu, wu)
		}
		want = werr
		if werr == nil {
			u = wu
		}
	case opAlloc:
		want = h.m.alloc(u)
		check(h.a.Alloc(u), want)
	case opFree:
		want = h.m.free(u)
		check(h.a.Free(u), want)
	case opHold:
		want = h.m.hold(u)
		check(h.a.Hold(u), want)
	case opRelease:
		h.a.Release(u)
		h.m.release(u)
	default:
		h.tb.Fatalf("bad op %d", op)
	}
	h.outcomes[outcome{op, want}]++

	if g, w := h.a.Allocated(), h.m.nA; g != w {
		h.tb.Fatalf("%s: Allocated() = %d, want %d", what(), g, w)
	}
	if g, w := h.a.HeldCount(), h.m.nH; g != w {
		h.tb.Fatalf("%s: HeldCount() = %d, want %d", what(), g, w)
	}
	if g, w := h.a.IsAllocated(u), h.m.state[u] == stAllocated; g != w {
		h.tb.Fatalf("%s: IsAllocated(%d) = %v, want %v", what(), u, g, w)
	}
	if g, w := h.a.IsHeld(u), h.m.state[u] == stHeld; g != w {
		h.tb.Fatalf("%s: IsHeld(%d) = %v, want %v", what(), u, g, w)
	}
}

// checkAgainstModel compares full contents, not just counts.
func (h *harness) checkAgainstModel() {
	h.tb.Helper()
	checkInvariants(h.tb, h.a)
	if g, w := collect(h.a.EachAllocated), h.m.sorted(stAllocated); !slices.Equal(g, w) {
		h.tb.Fatalf("step %d: allocated = %v, want %v", h.steps, g, w)
	}
	if g, w := collect(h.a.EachHeld), h.m.sorted(stHeld); !slices.Equal(g, w) {
		h.tb.Fatalf("step %d: held = %v, want %v", h.steps, g, w)
	}
}

func collect(each func(func(uint32) bool)) []uint32 {
	var out []uint32
	each(func(u uint32) bool {
		out = append(out, u)
		return true
	})
	return out
}

func spansOf(s *intervalSet) []span {
	var out []span
	s.tree.Ascend(func(r span) bool {
		out = append(out, r)
		return true
	})
	return out
}

// checkSet verifies the run invariants of one set: sorted, non-empty,
// non-overlapping, non-adjacent, within max, and a member count that agrees
// with the runs.
func checkSet(tb testing.TB, name string, s *intervalSet, max uint32) []span {
	tb.Helper()
	rs := spansOf(s)
	var n uint64
	for i, r := range rs {
		if r.lo > r.hi {
			tb.Fatalf("%s: run %d is empty: %+v", name, i, r)
		}
		if r.hi > max {
			tb.Fatalf("%s: run %+v past max %d", name, r, max)
		}
		// prev.hi < MaxUint32 whenever a run follows it, so +1 cannot wrap
		// unless the invariant is already broken (prev.hi >= r.lo).
		if i > 0 && uint64(rs[i-1].hi)+1 >= uint64(r.lo) {
			tb.Fatalf("%s: runs %+v and %+v overlap or touch", name, rs[i-1], r)
		}
		n += uint64(r.hi) - uint64(r.lo) + 1
	}
	if n != s.n {
		tb.Fatalf("%s: runs hold %d members, count says %d", name, n, s.n)
	}
	return rs
}

// union merges two sorted, disjoint run lists into maximal runs.
func union(a, b []span) []span {
	all := append(slices.Clone(a), b...)
	slices.SortFunc(all, func(x, y span) int {
		switch {
		case x.lo < y.lo:
			return -1
		case x.lo > y.lo:
			return 1
		}
		return 0
	})
	var out []span
	for _, r := range all {
		if n := len(out); n > 0 && uint64(out[n-1].hi)+1 >= uint64(r.lo) {
			out[n-1].hi = max(out[n-1].hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return out
}

// checkInvariants works on runs, never on individual units, so it is cheap
// for huge contiguous sets and safe at MaxUint32.
func checkInvariants(tb testing.TB, a *Allocator) {
	tb.Helper()
	al := checkSet(tb, "allocated", a.allocated, a.max)
	he := checkSet(tb, "held", a.held, a.max)
	us := checkSet(tb, "used", a.used, a.max)
	if a.used.n != a.allocated.n+a.held.n {
		tb.Fatalf("allocated and held overlap: |used|=%d, |allocated|=%d, |held|=%d",
			a.used.n, a.allocated.n, a.held.n)
	}
	if want := union(al, he); !slices.Equal(us, want) {
		tb.Fatalf("used = %v, want allocated ∪ held = %v", us, want)
	}
}
