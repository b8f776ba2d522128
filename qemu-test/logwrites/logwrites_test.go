package logwrites

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"testing"
)

// op is one entry of a synthetic log, in the layout the kernel writes.
type op struct {
	flags  Flags
	sector uint64 // in ss units
	data   []byte // len a multiple of ss
	mark   string
	nr     uint64 // discard length in ss units
}

// buildLog lays out ops as dm-log-writes does (see the package comment).
func buildLog(ss int, ops []op) []byte {
	le := binary.LittleEndian
	var b bytes.Buffer
	super := make([]byte, ss)
	le.PutUint64(super[0:], Magic)
	le.PutUint64(super[8:], Version)
	le.PutUint64(super[16:], uint64(len(ops)))
	le.PutUint32(super[24:], uint32(ss))
	b.Write(super)
	for _, o := range ops {
		h := make([]byte, ss)
		le.PutUint64(h[0:], o.sector)
		nr := uint64(len(o.data) / ss)
		if o.flags&Discard != 0 {
			nr = o.nr
		}
		le.PutUint64(h[8:], nr)
		le.PutUint64(h[16:], uint64(o.flags))
		if o.flags&Mark != 0 {
			le.PutUint64(h[24:], uint64(len(o.mark)))
			copy(h[32:], o.mark)
		}
		b.Write(h)
		if o.flags&Discard == 0 {
			b.Write(o.data)
		}
	}
	return b.Bytes()
}

func fill(n int, v byte) []byte { return bytes.Repeat([]byte{v}, n) }

func TestParse(t *testing.T) {
	ops := []op{
		{sector: 2, data: fill(1024, 0xaa)},
		{flags: Flush},
		{flags: Mark, mark: "c1"},
		{flags: Flush | FUA, sector: 8, data: fill(512, 0xbb)},
		{flags: Discard, sector: 2, nr: 1},
	}
	raw := buildLog(512, ops)
	l, err := Parse(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if l.SectorSize != 512 || len(l.Entries) != len(ops) {
		t.Fatalf("sector size %d, %d entries", l.SectorSize, len(l.Entries))
	}
	want := []struct {
		off, n int64
		f      Flags
		mark   string
	}{{1024, 1024, 0, ""}, {0, 0, Flush, ""}, {0, 0, Mark, "c1"}, {4096, 512, Flush | FUA, ""}, {1024, 512, Discard, ""}}
	for i, w := range want {
		e := l.Entries[i]
		if e.Offset != w.off || e.Length != w.n || e.Flags != w.f || e.Mark != w.mark {
			t.Errorf("entry %d = %v, want off=%d len=%d %v %q", i, e, w.off, w.n, w.f, w.mark)
		}
	}
	d, err := l.Data(l.Entries[3])
	if err != nil || !bytes.Equal(d, fill(512, 0xbb)) {
		t.Errorf("data of entry 3: %v %x", err, d[:4])
	}
	d, _ = l.Data(l.Entries[4])
	if !bytes.Equal(d, make([]byte, 512)) {
		t.Errorf("a discard reads as zeros, got %x", d[:4])
	}
	if m := l.Marks(); m["c1"] != 2 {
		t.Errorf("marks %v", m)
	}
}

func TestParseRejects(t *testing.T) {
	good := buildLog(512, []op{{sector: 0, data: fill(512, 1)}, {flags: Flush}})
	bad := append([]byte(nil), good...)
	bad[0] ^= 1
	short := good[:len(good)-600] // the first entry's data cut off
	many := append([]byte(nil), good...)
	binary.LittleEndian.PutUint64(many[16:], 1000)
	for name, raw := range map[string][]byte{"magic": bad, "truncated": short, "count": many} {
		if _, err := Parse(bytes.NewReader(raw), int64(len(raw))); !errors.Is(err, ErrFormat) {
			t.Errorf("%s: err = %v, want ErrFormat", name, err)
		}
	}
}

// TestWalkPrefix: each full-prefix state is the device after every write
// logged before its cut, and repeated states are reported as such.
func TestWalkPrefix(t *testing.T) {
	const ss = 512
	ops := []op{
		{sector: 0, data: fill(ss, 1)},
		{flags: Flush},
		{flags: Mark, mark: "a"},
		{flags: Mark, mark: "b"},
		{sector: 8, data: fill(2*ss, 2)},
		{flags: FUA, sector: 0, data: fill(ss, 3)},
		{flags: Flush},
	}
	raw := buildLog(ss, ops)
	l, err := Parse(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	base := make([]byte, 16*ss)
	im := NewImage(base)
	var got []State
	var firstByte, sector8 []byte
	err = Walk(l, im, Options{}, func(s State, img *Image) error {
		got = append(got, s)
		if img == nil {
			firstByte = append(firstByte, 0xff)
			sector8 = append(sector8, 0xff)
			return nil
		}
		firstByte = append(firstByte, img.Bytes()[0])
		sector8 = append(sector8, img.Bytes()[8*ss])
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// States at entries 1 (flush), 2 (mark), 3 (mark, same), 5 (FUA), 6 (flush).
	cuts := []int{2, 3, 4, 6, 7}
	if len(got) != len(cuts) {
		t.Fatalf("%d states: %+v", len(got), got)
	}
	for i, s := range got {
		if s.Cut != cuts[i] || s.Subset {
			t.Errorf("state %d: %+v, want cut %d", i, s, cuts[i])
		}
	}
	if got[1].SameAs != 0 || got[2].SameAs != 0 || got[3].SameAs != -1 || got[4].SameAs != 3 {
		t.Errorf("SameAs: %+v", got)
	}
	if !bytes.Equal(firstByte, []byte{1, 0xff, 0xff, 3, 0xff}) || !bytes.Equal(sector8, []byte{0, 0xff, 0xff, 2, 0xff}) {
		t.Errorf("contents: first byte %v, sector 8 %v", firstByte, sector8)
	}
	if im.Bytes()[0] != 3 || im.Bytes()[8*ss] != 2 {
		t.Error("after the walk the image is not the whole log replayed")
	}
}

// TestWalkSubsets: a subset state keeps everything durable at the last
// flush and every FUA write before its cut; each chunk of a pending write
// is either the write's data or what was there at the flush; and the image
// is restored after each one.
func TestWalkSubsets(t *testing.T) {
	const ss = 512
	ops := []op{
		{sector: 0, data: fill(ChunkSize, 1)},
		{flags: Flush},
		{sector: 8, data: fill(3*ChunkSize, 2)},            // chunks 1-3
		{flags: FUA, sector: 64, data: fill(ChunkSize, 3)}, // chunk 8
		{sector: 0, data: fill(ChunkSize, 4)},
		{flags: Mark, mark: "m"},
		{flags: Flush},
	}
	raw := buildLog(ss, ops)
	l, err := Parse(bytes.NewReader(raw), int64(len(raw)))
	if err != nil {
		t.Fatal(err)
	}
	im := NewImage(make([]byte, 12*ChunkSize))
	subsets := 0
	torn := false
	err = Walk(l, im, Options{SubsetsPerFlush: 200, Rand: rand.New(rand.NewSource(1))}, func(s State, img *Image) error {
		if !s.Subset {
			return nil
		}
		b := img.Bytes()
		chunk := func(i int) byte { return b[i*ChunkSize] }
		if s.Cut <= 2 {
			return nil // the interval before the first flush
		}
		subsets++
		if chunk(0) != 1 && chunk(0) != 4 {
			t.Fatalf("state %+v: chunk 0 = %d", s, chunk(0))
		}
		if chunk(0) == 4 && s.Cut <= 4 {
			t.Fatalf("state %+v: a write after the cut applied", s)
		}
		var mid []byte
		for i := 1; i <= 3; i++ {
			if c := chunk(i); c != 0 && c != 2 {
				t.Fatalf("state %+v: chunk %d = %d", s, i, c)
			}
			mid = append(mid, chunk(i))
		}
		if !bytes.Equal(mid, []byte{0, 0, 0}) && !bytes.Equal(mid, []byte{2, 2, 2}) {
			torn = true
		}
		if s.Cut > 3 && chunk(8) != 3 {
			t.Fatalf("state %+v: the FUA write before the cut is missing", s)
		}
		if s.Cut <= 3 && chunk(8) != 0 {
			t.Fatalf("state %+v: the FUA write after the cut applied", s)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if subsets != 200 || !torn {
		t.Errorf("%d subset states after the first flush, torn seen: %v", subsets, torn)
	}
	want := make([]byte, 12*ChunkSize)
	copy(want, fill(ChunkSize, 4))
	copy(want[ChunkSize:], fill(3*ChunkSize, 2))
	copy(want[8*ChunkSize:], fill(ChunkSize, 3))
	if !bytes.Equal(im.Bytes(), want) {
		t.Error("subset states were not reverted: the final image is not the whole log")
	}
}

func TestWriteSparse(t *testing.T) {
	base := make([]byte, 10*ChunkSize+100)
	base[5] = 7
	im := NewImage(base)
	if _, err := im.write(int64(9*ChunkSize+50), fill(ChunkSize, 9), false); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "img")
	if err := im.WriteSparse(p); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, im.Bytes()) {
		t.Error("sparse file differs from the image")
	}
	if _, err := im.write(int64(len(base)-10), fill(20, 1), false); err == nil {
		t.Error("a write past the device's end was accepted")
	}
}
