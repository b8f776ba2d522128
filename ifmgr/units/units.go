// Package units hands out interface unit numbers (the 5 in bridge5) for one
// cloner.
//
// It is shaped by two FreeBSD if_clone bugs. A request for a unit past the
// maximum answered "File exists" because range and collision were one check;
// here the range is checked first and has its own error. Units leaked forever
// because a name taken by a foreign interface was recorded as if allocated
// and nothing ever cleared it; here such units are "held", a set kept apart
// from "allocated", and a held unit is allocatable again the moment Release
// says its foreign owner is gone.
package units

import (
	"errors"
	"fmt"
	"math"

	"github.com/google/btree"
)

// Callers tell failures apart with errors.Is; every returned error wraps one
// of these with the unit (or range) it concerns.
var (
	// ErrRange is "no space": the unit is past Max, or a wildcard request
	// found every unit taken. It is deliberately distinct from ErrExists so
	// that an out-of-range request is never reported as a collision.
	ErrRange = errors.New("unit out of range: no space")
	// ErrExists means ifmgr itself already handed the unit out.
	ErrExists = errors.New("unit already allocated")
	// ErrHeld means the unit's name is in use by an interface ifmgr does not
	// own, so creating it would collide with someone else's interface.
	ErrHeld = errors.New("name held by an interface ifmgr does not own")
	// ErrNotAllocated guards Free against double frees and stray units.
	ErrNotAllocated = errors.New("unit not allocated")
)

// Allocator tracks the units 0..Max of one cloner.
//
// Units are in one of three states: free, allocated (ifmgr created the
// interface) or held (a foreign interface has the name). Allocated and held
// are disjoint. A third set, used = allocated ∪ held, is kept coalesced on
// its own so the wildcard search is one lookup even when allocated and held
// units alternate, instead of hopping between the two sets.
//
// An Allocator belongs to the single goroutine that owns its cloner and has
// no locking; sharing it between goroutines needs outside synchronisation.
type Allocator struct {
	max       uint32
	allocated *intervalSet
	held      *intervalSet
	used      *intervalSet
}

// New returns an allocator for units 0..max inclusive. max may be
// math.MaxUint32; nothing is preallocated, so a large max costs nothing.
func New(max uint32) *Allocator {
	// One freelist for the three trees: a node freed by one set, say when a
	// Free coalesces a run away, can be reused by another.
	fl := btree.NewFreeListG[span](btree.DefaultFreeListSize)
	return &Allocator{
		max:       max,
		allocated: newIntervalSet(fl),
		held:      newIntervalSet(fl),
		used:      newIntervalSet(fl),
	}
}

// Max is the highest unit this allocator will hand out.
func (a *Allocator) Max() uint32 { return a.max }

// AllocLowest allocates the lowest unit that is neither allocated nor held,
// the traditional choice for a wildcard "bridge" request. It fails with
// ErrRange when no unit in 0..Max is free.
func (a *Allocator) AllocLowest() (uint32, error) {
	u, ok := a.used.lowestAbsent(0)
	if !ok || u > a.max {
		return 0, fmt.Errorf("units 0-%d: %w", a.max, ErrRange)
	}
	a.allocated.add(u)
	a.used.add(u)
	return u, nil
}

// Alloc allocates the unit a caller asked for by name. The checks run in a
// fixed order so the error names the most fundamental problem: a unit past
// Max is ErrRange even if something also claims its name, and a unit ifmgr
// allocated is ErrExists rather than ErrHeld.
func (a *Allocator) Alloc(u uint32) error {
	switch {
	case u > a.max:
		return fmt.Errorf("unit %d: %w", u, ErrRange)
	case a.allocated.contains(u):
		return fmt.Errorf("unit %d: %w", u, ErrExists)
	case a.held.contains(u):
		return fmt.Errorf("unit %d: %w", u, ErrHeld)
	}
	a.allocated.add(u)
	a.used.add(u)
	return nil
}

// Free returns an allocated unit to the pool. Anything else, including a unit
// past Max, is ErrNotAllocated: a bad Free is the caller's bookkeeping bug and
// must be reported, not crash the owner goroutine.
func (a *Allocator) Free(u uint32) error {
	if !a.allocated.remove(u) {
		return fmt.Errorf("unit %d: %w", u, ErrNotAllocated)
	}
	// Allocated and held are disjoint, so u no longer has any claim.
	a.used.remove(u)
	return nil
}

// Hold records that a foreign interface has the name of unit u, so wildcard
// requests skip it and specific ones get ErrHeld. It is idempotent because
// link notifications repeat. A unit past Max cannot collide with anything we
// hand out and is ignored. An allocated unit gives ErrExists: ifmgr's own
// interface has that name, and the caller must Free it before recording a
// foreign one, so the two states never overlap.
func (a *Allocator) Hold(u uint32) error {
	if u > a.max {
		return nil
	}
	if a.allocated.contains(u) {
		return fmt.Errorf("unit %d: %w", u, ErrExists)
	}
	if a.held.add(u) {
		a.used.add(u)
	}
	return nil
}

// Release records that the foreign name is gone. The unit is allocatable
// again immediately, which is the point: the old allocator never got such
// units back. Releasing a unit that is not held does nothing, so stale or
// duplicate notifications are harmless.
func (a *Allocator) Release(u uint32) {
	if a.held.remove(u) {
		a.used.remove(u)
	}
}

// IsAllocated reports whether ifmgr holds unit u.
func (a *Allocator) IsAllocated(u uint32) bool { return a.allocated.contains(u) }

// IsHeld reports whether a foreign interface holds the name of unit u.
func (a *Allocator) IsHeld(u uint32) bool { return a.held.contains(u) }

// Allocated counts allocated units. It saturates at math.MaxInt, which only
// matters on 32-bit platforms with more than 2^31-1 units allocated.
func (a *Allocator) Allocated() int { return clampInt(a.allocated.n) }

// HeldCount counts held units, saturating like Allocated.
func (a *Allocator) HeldCount() int { return clampInt(a.held.n) }

// Runs counts the maximal runs of allocated units plus those of held units,
// the figure memory use follows. The derived used set is not counted: each of
// its runs is a union of allocated and held runs, so it holds at most as many
// again and total memory stays within twice Runs.
func (a *Allocator) Runs() int { return a.allocated.runs() + a.held.runs() }

// EachAllocated calls fn for every allocated unit in ascending order,
// stopping early when fn returns false. fn must not modify the allocator.
func (a *Allocator) EachAllocated(fn func(u uint32) bool) { a.allocated.each(fn) }

// EachHeld is EachAllocated for held units.
func (a *Allocator) EachHeld(fn func(u uint32) bool) { a.held.each(fn) }

func clampInt(n uint64) int {
	if n > math.MaxInt {
		return math.MaxInt
	}
	return int(n)
}
