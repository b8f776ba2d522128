// Package logwrites reads the log that the kernel's dm-log-writes target
// keeps of every write to a block device, and replays it onto a copy of the
// device's initial contents, the way xfstests' replay-log does, so that a
// test can look at the device as it was at any instant the power could have
// gone.
//
// # On-disk format (drivers/md/dm-log-writes.c, WRITE_LOG_VERSION 1)
//
// All fields are little-endian. Sector 0 of the log device holds the super
// block; entries follow from byte SectorSize on, each one a header block of
// SectorSize bytes and then, unless it is a discard, NrSectors blocks of the
// data written:
//
//	super: magic u64 (0x6a736677736872), version u64 (1), nr_entries u64,
//	       sectorsize u32 (the data device's logical block size)
//	entry: sector u64, nr_sectors u64 (both in sectorsize units),
//	       flags u64 (FLUSH 1, FUA 2, DISCARD 4, MARK 8, METADATA 16),
//	       data_len u64 (a mark's text, which follows the header in its block)
//
// # Ordering
//
// The target logs a write only once it is known to be on stable storage:
// a plain write waits in a list until a flush covers it, and all writes
// completed before a flush was issued are logged just before that flush's
// entry; a FUA write is logged as soon as it completes; a mark is logged
// when userspace sends it. So every entry before a FLUSH entry is durable
// once that flush is; the plain writes logged between two flushes are the
// ones a power cut may have left in any subset (the device's cache decides).
package logwrites

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Magic and Version are the only super block values this package reads.
const (
	Magic   = 0x6a736677736872
	Version = 1
)

// Flags of an entry.
type Flags uint64

const (
	Flush    Flags = 1 << 0 // a REQ_PREFLUSH: everything logged before is durable
	FUA      Flags = 1 << 1 // this write was durable when it completed
	Discard  Flags = 1 << 2 // the range was discarded (no data in the log)
	Mark     Flags = 1 << 3 // a userspace mark ("dmsetup message DEV 0 mark NAME")
	Metadata Flags = 1 << 4 // REQ_META, informational
)

func (f Flags) String() string {
	var s []string
	for _, n := range []struct {
		f    Flags
		name string
	}{{Flush, "FLUSH"}, {FUA, "FUA"}, {Discard, "DISCARD"}, {Mark, "MARK"}, {Metadata, "META"}} {
		if f&n.f != 0 {
			s = append(s, n.name)
		}
	}
	if len(s) == 0 {
		return "WRITE"
	}
	return strings.Join(s, "|")
}

// ErrFormat marks a log that is not a dm-log-writes log or is cut short.
var ErrFormat = errors.New("logwrites: bad log")

const (
	superSize = 8 + 8 + 8 + 4
	entrySize = 8 * 4
)

// Entry is one logged operation.
type Entry struct {
	Index  int    // position in the log, from 0
	Offset int64  // byte offset on the data device
	Length int64  // bytes written (or discarded); 0 for a pure flush or a mark
	Flags  Flags  //
	Mark   string // the mark's text, for a Mark entry
	data   int64  // byte offset of the data in the log; -1 if none
}

// IsData reports whether the entry changes the device's contents.
func (e Entry) IsData() bool { return e.Length > 0 }

func (e Entry) String() string {
	if e.Flags&Mark != 0 {
		return fmt.Sprintf("#%d MARK %q", e.Index, e.Mark)
	}
	return fmt.Sprintf("#%d %s off=%d len=%d", e.Index, e.Flags, e.Offset, e.Length)
}

// Log is a parsed log. Data is read from the underlying reader on demand.
type Log struct {
	SectorSize int
	Entries    []Entry
	r          io.ReaderAt
}

// Parse reads the super block and every entry header it counts.
func Parse(r io.ReaderAt, size int64) (*Log, error) {
	var sb [superSize]byte
	if _, err := r.ReadAt(sb[:], 0); err != nil {
		return nil, fmt.Errorf("%w: super block: %v", ErrFormat, err)
	}
	le := binary.LittleEndian
	if m := le.Uint64(sb[0:]); m != Magic {
		return nil, fmt.Errorf("%w: magic %#x, want %#x", ErrFormat, m, uint64(Magic))
	}
	if v := le.Uint64(sb[8:]); v != Version {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrFormat, v, Version)
	}
	n := le.Uint64(sb[16:])
	ss := int64(le.Uint32(sb[24:]))
	if ss < 512 || ss&(ss-1) != 0 || ss > 1<<16 {
		return nil, fmt.Errorf("%w: sector size %d", ErrFormat, ss)
	}
	if n > uint64(size/ss) {
		return nil, fmt.Errorf("%w: %d entries cannot fit in %d bytes", ErrFormat, n, size)
	}
	l := &Log{SectorSize: int(ss), r: r, Entries: make([]Entry, 0, n)}
	hdr := make([]byte, ss)
	pos := ss
	for i := 0; i < int(n); i++ {
		if pos+ss > size {
			return nil, fmt.Errorf("%w: entry %d header at %d is past the end (%d)", ErrFormat, i, pos, size)
		}
		if _, err := r.ReadAt(hdr, pos); err != nil {
			return nil, fmt.Errorf("%w: entry %d at %d: %v", ErrFormat, i, pos, err)
		}
		sector, nr := le.Uint64(hdr[0:]), le.Uint64(hdr[8:])
		flags, dlen := Flags(le.Uint64(hdr[16:])), le.Uint64(hdr[24:])
		if nr > uint64(size/ss) || sector > 1<<48 {
			return nil, fmt.Errorf("%w: entry %d at %d: sector %d count %d out of range", ErrFormat, i, pos, sector, nr)
		}
		e := Entry{Index: i, Offset: int64(sector) * ss, Length: int64(nr) * ss, Flags: flags, data: -1}
		pos += ss
		switch {
		case flags&Mark != 0:
			if dlen > uint64(ss-entrySize) {
				return nil, fmt.Errorf("%w: entry %d: mark of %d bytes", ErrFormat, i, dlen)
			}
			e.Mark = string(hdr[entrySize : entrySize+dlen])
			e.Length = 0
		case dlen != 0:
			// Inline data (not a mark) is something newer kernels may log;
			// its layout is not the one below, so refuse rather than guess.
			return nil, fmt.Errorf("%w: entry %d has %d bytes of inline data, which this reader does not know", ErrFormat, i, dlen)
		case flags&Discard != 0:
		default:
			e.data = pos
			pos += e.Length
			if pos > size {
				return nil, fmt.Errorf("%w: entry %d data ends at %d, past the end (%d)", ErrFormat, i, pos, size)
			}
		}
		l.Entries = append(l.Entries, e)
	}
	return l, nil
}

// Data reads an entry's data (zeros for a discard).
func (l *Log) Data(e Entry) ([]byte, error) {
	b := make([]byte, e.Length)
	if e.data < 0 {
		return b, nil
	}
	if _, err := l.r.ReadAt(b, e.data); err != nil {
		return nil, fmt.Errorf("logwrites: data of %v: %w", e, err)
	}
	return b, nil
}

// Marks returns the index of every mark entry by its text.
func (l *Log) Marks() map[string]int {
	m := map[string]int{}
	for _, e := range l.Entries {
		if e.Flags&Mark != 0 {
			m[e.Mark] = e.Index
		}
	}
	return m
}
