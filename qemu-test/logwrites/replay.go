package logwrites

import (
	"fmt"
	"math/rand"
	"os"
)

// ChunkSize is the granularity at which Image tracks which parts of the
// device may hold data, and at which a write that is not yet flushed may
// be torn: a disk's cache can land any subset of a multi-block write's 4 KiB
// blocks before power goes.
const ChunkSize = 4096

// Image is the data device's contents in memory, changed in place by
// replayed writes. It knows which chunks may be non-zero, so that a state
// is written out as a sparse file of those chunks only: a 32 MiB ext4 image
// holds a few MiB of data, and a crash state then costs that, not a full
// copy.
type Image struct {
	buf  []byte
	used []bool // chunk i may be non-zero
}

// NewImage copies base (the device before logging started).
func NewImage(base []byte) *Image {
	im := &Image{buf: append([]byte(nil), base...), used: make([]bool, (len(base)+ChunkSize-1)/ChunkSize)}
	for i := range im.used {
		end := min((i+1)*ChunkSize, len(base))
		for _, b := range base[i*ChunkSize : end] {
			if b != 0 {
				im.used[i] = true
				break
			}
		}
	}
	return im
}

// Size is the device's size in bytes.
func (im *Image) Size() int64 { return int64(len(im.buf)) }

// Bytes is the current contents (not a copy).
func (im *Image) Bytes() []byte { return im.buf }

// undo restores what a write overwrote.
type undo struct {
	off int64
	old []byte
}

// write copies data to off and returns what was there before (if keep).
func (im *Image) write(off int64, data []byte, keep bool) (undo, error) {
	if off < 0 || off+int64(len(data)) > int64(len(im.buf)) {
		return undo{}, fmt.Errorf("logwrites: write of %d bytes at %d is outside the %d-byte device", len(data), off, len(im.buf))
	}
	u := undo{off: off}
	if keep {
		u.old = append([]byte(nil), im.buf[off:off+int64(len(data))]...)
	}
	copy(im.buf[off:], data)
	if len(data) > 0 {
		for c := off / ChunkSize; c <= (off+int64(len(data))-1)/ChunkSize; c++ {
			im.used[c] = true
		}
	}
	return u, nil
}

func (im *Image) revert(us []undo) {
	for i := len(us) - 1; i >= 0; i-- {
		copy(im.buf[us[i].off:], us[i].old)
	}
}

// WriteSparse writes the image to a new file at path, skipping chunks that
// were never written and are zero in the base: the file reads back as the
// whole device.
func (im *Image) WriteSparse(path string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if err := f.Truncate(int64(len(im.buf))); err != nil {
		f.Close()
		return err
	}
	for i := 0; i < len(im.used); {
		if !im.used[i] {
			i++
			continue
		}
		j := i
		for j < len(im.used) && im.used[j] {
			j++
		}
		end := min(j*ChunkSize, len(im.buf))
		if _, err := f.WriteAt(im.buf[i*ChunkSize:end], int64(i*ChunkSize)); err != nil {
			f.Close()
			return err
		}
		i = j
	}
	return f.Close()
}

// State is one crash state: what the device holds if the power went at a
// point in the log.
type State struct {
	ID int
	// Cut: the crash happened before entry Cut was logged. Marks with a
	// smaller index had been sent; every write they depend on is durable.
	Cut int
	// Subset: the writes since the last flush were applied in a random
	// subset (and multi-chunk ones possibly torn); Dropped of the Pending
	// candidates were left out, Torn applied in part. Otherwise the state is
	// the log replayed in full up to Cut.
	Subset           bool
	Pending, Dropped int
	Torn             int // pending writes applied in part (some chunks only)
	// SameAs is the ID of an earlier state whose device contents are
	// identical (no data was written in between), or -1.
	SameAs int
}

// Options say which states Walk produces.
type Options struct {
	// SubsetsPerFlush is how many random-subset states are drawn in each
	// interval between two flushes that has unflushed writes.
	SubsetsPerFlush int
	Rand            *rand.Rand // required if SubsetsPerFlush > 0
}

// Walk replays the log onto im, calling visit for every crash state in log
// order:
//
//   - after every FLUSH, FUA and MARK entry: the log replayed in full up to
//     and including it (states with nothing written since the previous one
//     are reported with SameAs, and im is nil then);
//   - SubsetsPerFlush times per flush interval: the state at the last flush,
//     plus every FUA write up to a random cut before the next flush, plus a
//     random subset of the plain writes up to the cut, a write of several
//     chunks being torn (a random subset of its chunks) a quarter of the
//     time.
//
// visit must not keep im; it may read it (or write it out) before
// returning. At the end im holds the whole log replayed.
func Walk(l *Log, im *Image, opt Options, visit func(s State, im *Image) error) error {
	id := 0
	last := -1 // ID of the last full-prefix state reported
	dirty := true
	emit := func(s State, img *Image) error {
		s.ID = id
		id++
		return visit(s, img)
	}
	// subsets draws the random states between the flush at index from-1
	// (or the log's start) and the next flush.
	subsets := func(from int) error {
		if opt.SubsetsPerFlush <= 0 {
			return nil
		}
		next := from
		for next < len(l.Entries) && l.Entries[next].Flags&Flush == 0 {
			next++
		}
		// Cuts are chosen among positions that leave at least one plain
		// write pending; without one the state is a prefix state.
		var plain []int
		for i := from; i < next; i++ {
			e := l.Entries[i]
			if e.IsData() && e.Flags&FUA == 0 {
				plain = append(plain, i)
			}
		}
		if len(plain) == 0 {
			return nil
		}
		for n := 0; n < opt.SubsetsPerFlush; n++ {
			cut := plain[0] + 1 + opt.Rand.Intn(next-plain[0]) // in (first plain, next]
			var us []undo
			pending, dropped, nTorn := 0, 0, 0
			for i := from; i < cut; i++ {
				e := l.Entries[i]
				if !e.IsData() {
					continue
				}
				data, err := l.Data(e)
				if err != nil {
					return err
				}
				if e.Flags&FUA != 0 {
					u, err := im.write(e.Offset, data, true)
					if err != nil {
						return err
					}
					us = append(us, u)
					continue
				}
				pending++
				if opt.Rand.Intn(2) == 0 {
					dropped++
					continue
				}
				torn := len(data) > ChunkSize && opt.Rand.Intn(4) == 0
				if torn {
					nTorn++
				}
				for o := 0; o < len(data); o += ChunkSize {
					if torn && opt.Rand.Intn(2) == 0 {
						continue
					}
					u, err := im.write(e.Offset+int64(o), data[o:min(o+ChunkSize, len(data))], true)
					if err != nil {
						return err
					}
					us = append(us, u)
				}
			}
			err := emit(State{Cut: cut, Subset: true, Pending: pending, Dropped: dropped, Torn: nTorn, SameAs: -1}, im)
			im.revert(us)
			if err != nil {
				return err
			}
		}
		return nil
	}
	if err := subsets(0); err != nil {
		return err
	}
	for i, e := range l.Entries {
		if e.IsData() {
			data, err := l.Data(e)
			if err != nil {
				return err
			}
			if _, err := im.write(e.Offset, data, false); err != nil {
				return err
			}
			dirty = true
		}
		if e.Flags&(Flush|FUA|Mark) == 0 {
			continue
		}
		s := State{Cut: i + 1, SameAs: -1}
		if dirty || last < 0 {
			last = id
			if err := emit(s, im); err != nil {
				return err
			}
		} else {
			s.SameAs = last
			if err := emit(s, nil); err != nil {
				return err
			}
		}
		dirty = false
		if e.Flags&Flush != 0 {
			if err := subsets(i + 1); err != nil {
				return err
			}
		}
	}
	return nil
}
