package units

import (
	"math"
	"slices"
	"testing"
)

// fuzzMax decodes the first byte. Small maxima make "full" reachable; the two
// top values put the range edge at the 32-bit limit.
func fuzzMax(b byte) uint32 {
	switch b {
	case 0xff:
		return math.MaxUint32
	case 0xfe:
		return math.MaxUint32 - 1
	}
	return uint32(b % 48)
}

// fuzzUnit maps a byte to a unit: low values near the small maxima, the top
// sixteen to the sixteen highest uint32 values so wrap-around bugs are
// reachable.
func fuzzUnit(b byte) uint32 {
	if b >= 0xf0 {
		return math.MaxUint32 - uint32(b-0xf0)
	}
	return uint32(b)
}

// maxFuzzOps bounds the op sequence one input can describe.
const maxFuzzOps = 256

// FuzzAllocator reads data as: one byte of max, then (op, unit) byte pairs.
// Op values past the mutating ones check contents and early-stopping
// iteration. Every op is checked against the reference model, and the run
// invariants after every op, since the sets are small.
func FuzzAllocator(f *testing.F) {
	f.Add([]byte{10, 0, 0, 0, 0, 3, 1, 0, 0, 4, 1, 0, 0})
	f.Add([]byte{0, 0, 0, 0, 0, 2, 0, 3, 0, 0, 0, 4, 0, 0, 0})
	f.Add([]byte{0xff, 1, 0xf0, 1, 0xf1, 2, 0xf0, 3, 0xf0, 0, 0, 5, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		// Long inputs add little over long op sequences the mutator can build
		// anyway, and since each op is checked in full they make every run
		// (and above all the minimizer, quadratic in input length) slow.
		if len(data) == 0 || len(data) > 1+2*maxFuzzOps {
			return
		}
		h := newHarness(t, fuzzMax(data[0]))
		for ops := data[1:]; len(ops) >= 2; ops = ops[2:] {
			op, u := int(ops[0]%(numOps+1)), fuzzUnit(ops[1])
			if op == numOps {
				h.checkAgainstModel()
				checkEarlyStop(t, h, int(ops[1]%4)+1)
				continue
			}
			h.do(op, u)
			checkInvariants(t, h.a)
		}
		h.checkAgainstModel()
	})
}

// checkEarlyStop asks for the first k units of each set and expects exactly
// the model's first k (or all, if fewer).
func checkEarlyStop(t *testing.T, h *harness, k int) {
	t.Helper()
	for _, c := range []struct {
		name string
		each func(func(uint32) bool)
		st   uint8
	}{{"allocated", h.a.EachAllocated, stAllocated}, {"held", h.a.EachHeld, stHeld}} {
		var got []uint32
		calls := 0
		c.each(func(u uint32) bool {
			calls++
			got = append(got, u)
			return len(got) < k
		})
		want := h.m.sorted(c.st)
		want = want[:min(k, len(want))]
		if !slices.Equal(got, want) || calls != len(want) {
			t.Fatalf("first %d %s = %v (%d calls), want %v", k, c.name, got, calls, want)
		}
	}
}
