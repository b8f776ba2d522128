package units

import (
	"math"

	"github.com/google/btree"
)

// span is one run [lo, hi] of members. hi is inclusive so that a run ending
// at math.MaxUint32 fits in a uint32 instead of needing a 33-bit bound.
type span struct{ lo, hi uint32 }

// spanLess orders runs by their first member only: runs never overlap, so lo
// alone identifies a run and lets a lookup key be span{lo: u}.
func spanLess(a, b span) bool { return a.lo < b.lo }

// treeDegree trades node width against tree height. Spans are 8 bytes, so
// even a full node (63 spans, about 500 bytes) is cheap to search and shift,
// and a million runs are 3-4 levels deep. Degrees 16 and 64 measured about
// the same; 32 was slightly ahead on the fragmented benchmarks.
const treeDegree = 32

// intervalSet is a set of uint32 stored as runs, so its memory follows the
// number of runs rather than the number of members: a million consecutive
// units is one item.
//
// Runs are kept maximal (never overlapping, never adjacent). Besides saving
// space, that is what makes the first gap cheap to find: whatever follows a
// run is by construction not a member.
type intervalSet struct {
	tree *btree.BTreeG[span]
	n    uint64 // members, not runs; uint64 because 0..MaxUint32 is 2^32 members
}

func newIntervalSet(fl *btree.FreeListG[span]) *intervalSet {
	return &intervalSet{tree: btree.NewWithFreeListG(treeDegree, spanLess, fl)}
}

// runs reports how many items the tree holds, which is what the set costs.
func (s *intervalSet) runs() int { return s.tree.Len() }

// floor returns the run with the greatest lo <= u: the only run that can
// contain u, and the one u would extend if it sits right after it.
func (s *intervalSet) floor(u uint32) (span, bool) {
	var got span
	var ok bool
	s.tree.DescendLessOrEqual(span{lo: u}, func(r span) bool {
		got, ok = r, true
		return false
	})
	return got, ok
}

func (s *intervalSet) contains(u uint32) bool {
	r, ok := s.floor(u)
	return ok && u <= r.hi
}

// add inserts u, merging with the runs on either side so runs stay maximal;
// it reports whether u was new.
func (s *intervalSet) add(u uint32) bool {
	left, hasLeft := s.floor(u)
	if hasLeft && u <= left.hi {
		return false
	}
	// left.hi < u here, so left.hi+1 cannot wrap.
	joinsLeft := hasLeft && left.hi+1 == u
	var right span
	joinsRight := false
	if u != math.MaxUint32 {
		right, joinsRight = s.tree.Get(span{lo: u + 1})
	}
	switch {
	case joinsLeft && joinsRight:
		s.tree.Delete(right)
		s.tree.ReplaceOrInsert(span{left.lo, right.hi})
	case joinsLeft:
		s.tree.ReplaceOrInsert(span{left.lo, u})
	case joinsRight:
		s.tree.Delete(right)
		s.tree.ReplaceOrInsert(span{u, right.hi})
	default:
		s.tree.ReplaceOrInsert(span{u, u})
	}
	s.n++
	return true
}

// remove deletes u, splitting its run when u is inside it; it reports
// whether u was a member.
func (s *intervalSet) remove(u uint32) bool {
	r, ok := s.floor(u)
	if !ok || u > r.hi {
		return false
	}
	// Each branch leaves only non-empty runs; u+1 and u-1 are computed only
	// where u < r.hi or u > r.lo, so neither can wrap.
	switch {
	case r.lo == r.hi:
		s.tree.Delete(r)
	case u == r.lo:
		s.tree.Delete(r)
		s.tree.ReplaceOrInsert(span{u + 1, r.hi})
	case u == r.hi:
		s.tree.ReplaceOrInsert(span{r.lo, u - 1})
	default:
		s.tree.ReplaceOrInsert(span{r.lo, u - 1})
		s.tree.ReplaceOrInsert(span{u + 1, r.hi})
	}
	s.n--
	return true
}

// lowestAbsent returns the least value >= from that is not a member. With
// maximal runs that is either from itself or the value just past the run
// holding it, so it costs one lookup however fragmented the set is. ok is
// false only when every value from..MaxUint32 is a member.
func (s *intervalSet) lowestAbsent(from uint32) (uint32, bool) {
	r, ok := s.floor(from)
	if !ok || from > r.hi {
		return from, true
	}
	if r.hi == math.MaxUint32 {
		return 0, false
	}
	return r.hi + 1, true
}

// each visits members in ascending order until fn returns false.
func (s *intervalSet) each(fn func(uint32) bool) {
	s.tree.Ascend(func(r span) bool {
		// Counting up to hi inclusive with "u <= r.hi; u++" would never end
		// for a run reaching MaxUint32, so the loop exits on equality.
		for u := r.lo; ; u++ {
			if !fn(u) {
				return false
			}
			if u == r.hi {
				return true
			}
		}
	})
}
