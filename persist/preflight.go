package persist

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"math/bits"
)

// preflight validates a bbolt file's page structure with bounds-checked
// reads before bbolt maps it.
//
// Why not just recover from bbolt's panics: bbolt dereferences page offsets
// from the file without checks, and several of its failure modes cannot be
// recovered. tx.Check runs on a goroutine of its own, so its assertion
// panics (FastCheck on a page whose header is wrong) and memory faults kill
// the process; Open on a file without a synced freelist rebuilds it with a
// walk that panics on another goroutine for every inconsistency it sees; a
// page that references itself makes the recursive walks overflow the stack,
// which is fatal; a garbage count can ask for a huge allocation. On a router
// each of these is a boot loop. So everything those walks touch is checked
// here first: meta pages, the freelist page, and every branch/leaf page
// reachable from the root, including nested and inline buckets, element
// bounds, page references (each page at most once, below the high-water
// mark, within the file) and key order. Only then is the file handed to
// bbolt, whose own tx.Check still runs afterwards.
//
// It reads the file with pread, never the mmap, so a file truncated under
// us fails with an error rather than SIGBUS.
func preflight(r io.ReaderAt, size int64) error {
	if size == 0 {
		return errors.New("file is empty (zero length)")
	}
	m0, _ := readMeta(r, 0)
	ps := uint64(0)
	if m0.check() == nil {
		ps = uint64(m0.pageSize)
	} else {
		// Like bbolt: page 0 is bad, so find page 1 by trying page sizes.
		for i := 0; i <= 14; i++ {
			pos := int64(1024) << i
			if pos >= size-1024 {
				break
			}
			if m, err := readMeta(r, pos); err == nil && m.check() == nil {
				ps = uint64(m.pageSize)
				break
			}
		}
	}
	if ps == 0 {
		if m1, err := readMeta(r, pageSize); err == nil && errors.Is(m1.check(), errFormatTooNew) {
			return fmt.Errorf("no valid meta page: page 1: %w", m1.check())
		}
		return fmt.Errorf("no valid meta page: page 0: %w", m0.check())
	}
	if ps < 1024 || ps > 1<<16 || bits.OnesCount64(ps) != 1 {
		return fmt.Errorf("implausible page size %d", ps)
	}
	if uint64(size) < 2*ps {
		return fmt.Errorf("file is %d bytes, smaller than two %d-byte meta pages", size, ps)
	}
	m1, _ := readMeta(r, int64(ps))
	var active *boltMeta
	for _, m := range []*boltMeta{&m0, &m1} {
		if m.check() == nil && (active == nil || m.txid > active.txid) {
			active = m
		}
	}
	if active == nil {
		return fmt.Errorf("no valid meta page: page 0: %v; page 1: %w", m0.check(), m1.check())
	}
	// tx.Check asserts on both meta page headers even when one meta is
	// unused, so both must be intact.
	for i, m := range []*boltMeta{&m0, &m1} {
		if m.id != uint64(i) || m.pageFlags != flagMeta {
			return fmt.Errorf("meta page %d: header says page %d with flags %#x", i, m.id, m.pageFlags)
		}
	}
	if uint64(active.pageSize) != ps {
		return fmt.Errorf("meta page size %d disagrees with layout page size %d", active.pageSize, ps)
	}
	c := &checker{r: r, ps: ps, hwm: active.pgid, seen: map[uint64]bool{0: true, 1: true}}
	if c.hwm < 3 {
		return fmt.Errorf("high-water mark %d is below the minimum of 3 pages", c.hwm)
	}
	if c.hwm > uint64(size)/ps {
		return fmt.Errorf("file is truncated: meta says %d pages of %d bytes (%d bytes) but the file has %d bytes",
			c.hwm, ps, c.hwm*ps, size)
	}
	synced := active.freelist != noFreelist
	if synced {
		if err := c.freelist(active.freelist); err != nil {
			return err
		}
	}
	if _, err := c.tree(active.root, 0, nil, nil); err != nil {
		return fmt.Errorf("root bucket: %w", err)
	}
	if synced {
		for id := uint64(2); id < c.hwm; id++ {
			if !c.seen[id] && !c.free[id] {
				return fmt.Errorf("page %d is neither reachable nor free", id)
			}
		}
	}
	return nil
}

// bbolt's on-disk format (go.etcd.io/bbolt/internal/common). It is the
// writing CPU's native byte order; that is why a DB from a big-endian MIPS
// router does not open on a little-endian one.
const (
	boltMagic       = 0xED0CDAED
	boltVersion     = 2
	pageHeaderSize  = 16 // id u64, flags u16, count u16, overflow u32
	elemSize        = 16 // branch: pos, ksize u32, pgid u64; leaf: flags, pos, ksize, vsize u32
	bucketHdrSize   = 16 // root pgid u64, sequence u64
	metaEnd         = pageHeaderSize + 64
	flagBranch      = 0x01
	flagLeaf        = 0x02
	flagMeta        = 0x04
	flagFreelist    = 0x10
	leafFlagBucket  = 0x01
	noFreelist      = ^uint64(0)
	maxTreeDepth    = 64 // far beyond any real B+tree or bucket nesting
	freelistCountFF = 0xFFFF
)

var ne = binary.NativeEndian

type boltMeta struct {
	id                              uint64 // page header
	pageFlags                       uint16
	magic, version, pageSize, flags uint32
	root, freelist, pgid, txid      uint64
	checksum, sum                   uint64
}

// readMeta reads the meta page at off; a short read leaves the zero value,
// which check rejects.
func readMeta(r io.ReaderAt, off int64) (boltMeta, error) {
	var b [metaEnd]byte
	if n, err := r.ReadAt(b[:], off); n != len(b) {
		return boltMeta{}, fmt.Errorf("short read at %d: %v", off, err)
	}
	return parseMeta(b[:], ne), nil
}

func parseMeta(b []byte, bo binary.ByteOrder) boltMeta {
	m := b[pageHeaderSize:metaEnd]
	h := fnv.New64a()
	h.Write(m[:56])
	return boltMeta{
		id:        bo.Uint64(b[0:]),
		pageFlags: bo.Uint16(b[8:]),
		magic:     bo.Uint32(m[0:]),
		version:   bo.Uint32(m[4:]),
		pageSize:  bo.Uint32(m[8:]),
		flags:     bo.Uint32(m[12:]),
		root:      bo.Uint64(m[16:]), // m[24:32] is the root bucket's sequence
		freelist:  bo.Uint64(m[32:]),
		pgid:      bo.Uint64(m[40:]),
		txid:      bo.Uint64(m[48:]),
		checksum:  bo.Uint64(m[56:]),
		sum:       h.Sum64(),
	}
}

// errFormatTooNew marks a file from a bbolt with a newer on-disk format,
// which only a newer firmware can have written: like a newer schema, it is
// refused rather than moved aside.
var errFormatTooNew = errors.New("bbolt on-disk format is newer than this build's bbolt")

// errForeignEndian is given its own message because it is the one damage
// with an innocent cause (moving a DB between routers) worth telling apart.
var errForeignEndian = errors.New("bbolt file written by a CPU of the other byte order (bbolt's format is native-endian)")

func (m *boltMeta) check() error {
	switch {
	case m.magic == bits.ReverseBytes32(boltMagic):
		return errForeignEndian
	case m.magic != boltMagic:
		return fmt.Errorf("not a bbolt meta page (magic %#08x)", m.magic)
	case m.version > boltVersion && m.version < 256: // a flipped high bit is damage, not a release
		return fmt.Errorf("%w (version %d, want %d)", errFormatTooNew, m.version, boltVersion)
	case m.version != boltVersion:
		return fmt.Errorf("bbolt format version %d, want %d", m.version, boltVersion)
	case m.checksum != m.sum:
		return fmt.Errorf("meta checksum %#016x, computed %#016x", m.checksum, m.sum)
	}
	return nil
}

type checker struct {
	r    io.ReaderAt
	ps   uint64
	hwm  uint64
	seen map[uint64]bool // pages in use: metas, freelist, tree pages
	free map[uint64]bool
}

// page reads page id and its overflow pages, checks the header and claims
// the pages so that no page is used twice (which also rules out cycles).
func (c *checker) page(id uint64, want ...uint16) ([]byte, error) {
	if id < 2 || id >= c.hwm {
		return nil, fmt.Errorf("page %d outside [2, %d)", id, c.hwm)
	}
	var h [pageHeaderSize]byte
	if _, err := c.r.ReadAt(h[:], int64(id*c.ps)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	hid, flags, overflow := ne.Uint64(h[0:]), ne.Uint16(h[8:]), uint64(ne.Uint32(h[12:]))
	if hid != id {
		return nil, fmt.Errorf("page %d: header says page %d", id, hid)
	}
	ok := false
	for _, w := range want {
		ok = ok || flags == w
	}
	if !ok {
		return nil, fmt.Errorf("page %d: unexpected flags %#x", id, flags)
	}
	if overflow >= c.hwm-id {
		return nil, fmt.Errorf("page %d: %d overflow pages run past the high-water mark %d", id, overflow, c.hwm)
	}
	for p := id; p <= id+overflow; p++ {
		if c.seen[p] {
			return nil, fmt.Errorf("page %d (via page %d) is referenced more than once", p, id)
		}
		if c.free[p] {
			return nil, fmt.Errorf("page %d (via page %d) is in use and on the freelist", p, id)
		}
		c.seen[p] = true
	}
	buf := make([]byte, (overflow+1)*c.ps)
	if _, err := c.r.ReadAt(buf, int64(id*c.ps)); err != nil {
		return nil, fmt.Errorf("page %d: %w", id, err)
	}
	return buf, nil
}

func (c *checker) freelist(id uint64) error {
	p, err := c.page(id, flagFreelist)
	if err != nil {
		return fmt.Errorf("freelist: %w", err)
	}
	body := p[pageHeaderSize:]
	n := uint64(ne.Uint16(p[10:]))
	if n == freelistCountFF { // real count is in the first slot
		if len(body) < 8 {
			return fmt.Errorf("freelist page %d: no room for its count", id)
		}
		n, body = ne.Uint64(body), body[8:]
	}
	if n > uint64(len(body))/8 {
		return fmt.Errorf("freelist page %d: %d ids do not fit in the page", id, n)
	}
	c.free = make(map[uint64]bool, n)
	for i := range n {
		pg := ne.Uint64(body[i*8:])
		switch {
		case pg < 2 || pg >= c.hwm:
			return fmt.Errorf("freelist page %d lists page %d outside [2, %d)", id, pg, c.hwm)
		case c.free[pg]:
			return fmt.Errorf("freelist page %d lists page %d twice", id, pg)
		case c.seen[pg]:
			return fmt.Errorf("freelist page %d lists page %d, which is in use", id, pg)
		}
		c.free[pg] = true
	}
	return nil
}

// tree checks the B+tree rooted at page id whose keys must lie in
// [lo, hi) (nil = unbounded), as bbolt's key-order check requires, and
// returns the largest key found.
func (c *checker) tree(id uint64, depth int, lo, hi []byte) ([]byte, error) {
	if depth > maxTreeDepth {
		return nil, fmt.Errorf("page %d: tree deeper than %d", id, maxTreeDepth)
	}
	p, err := c.page(id, flagBranch, flagLeaf)
	if err != nil {
		return nil, err
	}
	if ne.Uint16(p[8:]) == flagLeaf {
		return c.leaf(p, depth, lo, hi)
	}
	n := int(ne.Uint16(p[10:]))
	if n == 0 {
		return nil, fmt.Errorf("branch page %d has no elements", id)
	}
	keys := make([][]byte, n)
	children := make([]uint64, n)
	for i := range n {
		e, err := elem(p, i)
		if err != nil {
			return nil, fmt.Errorf("branch page %d: %w", id, err)
		}
		pos, ksize := uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
		if keys[i], err = span(p, i, pos, ksize); err != nil {
			return nil, fmt.Errorf("branch page %d: %w", id, err)
		}
		children[i] = ne.Uint64(e[8:])
	}
	runningMin, maxKey := lo, []byte(nil)
	for i := range n {
		if err := keyOrder(i, keys[i], runningMin, hi); err != nil {
			return nil, fmt.Errorf("branch page %d: %w", id, err)
		}
		next := hi
		if i+1 < n {
			next = keys[i+1]
		}
		if maxKey, err = c.tree(children[i], depth+1, keys[i], next); err != nil {
			return nil, err
		}
		runningMin = maxKey
	}
	return maxKey, nil
}

// leaf checks the elements of a leaf page (p starts at its header; for an
// inline bucket it is the value after the bucket header) and the buckets
// they hold. It returns the last key, nil for an empty leaf, as bbolt does.
func (c *checker) leaf(p []byte, depth int, lo, hi []byte) ([]byte, error) {
	if len(p) < pageHeaderSize {
		return nil, errors.New("inline bucket shorter than a page header")
	}
	runningMin, maxKey := lo, []byte(nil)
	for i := range int(ne.Uint16(p[10:])) {
		e, err := elem(p, i)
		if err != nil {
			return nil, err
		}
		flags, pos := ne.Uint32(e[0:]), uint64(ne.Uint32(e[4:]))
		ksize, vsize := uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
		kv, err := span(p, i, pos, ksize+vsize)
		if err != nil {
			return nil, err
		}
		k, v := kv[:ksize], kv[ksize:]
		if err := keyOrder(i, k, runningMin, hi); err != nil {
			return nil, err
		}
		runningMin, maxKey = k, k
		switch flags {
		case 0:
		case leafFlagBucket:
			if err := c.bucket(v, depth+1); err != nil {
				return nil, fmt.Errorf("bucket %q: %w", k, err)
			}
		default:
			return nil, fmt.Errorf("element %d: unknown leaf flags %#x", i, flags)
		}
	}
	return maxKey, nil
}

func (c *checker) bucket(v []byte, depth int) error {
	if len(v) < bucketHdrSize {
		return fmt.Errorf("bucket header is %d bytes", len(v))
	}
	if root := ne.Uint64(v); root != 0 {
		_, err := c.tree(root, depth, nil, nil)
		return err
	}
	inline := v[bucketHdrSize:]
	if len(inline) < pageHeaderSize || ne.Uint16(inline[8:]) != flagLeaf {
		return errors.New("inline bucket is not a leaf page")
	}
	_, err := c.leaf(inline, depth, nil, nil)
	return err
}

// elem returns element i of the page after checking it lies inside it.
func elem(p []byte, i int) ([]byte, error) {
	off := pageHeaderSize + i*elemSize
	if off+elemSize > len(p) {
		return nil, fmt.Errorf("element %d lies outside the page", i)
	}
	return p[off : off+elemSize], nil
}

// span returns the n bytes that element i points at; bbolt stores their
// position relative to the element itself.
func span(p []byte, i int, pos, n uint64) ([]byte, error) {
	start := uint64(pageHeaderSize+i*elemSize) + pos
	if start > uint64(len(p)) || n > uint64(len(p))-start {
		return nil, fmt.Errorf("element %d: data [%d, +%d) lies outside the %d-byte page", i, start, n, len(p))
	}
	return p[start : start+n], nil
}

// keyOrder mirrors bbolt's tx.Check rule: keys ascend strictly within a
// page and stay within the range their parent branch element gives them.
func keyOrder(i int, k, prev, hi []byte) error {
	if prev != nil && (bytes.Compare(prev, k) > 0 || i > 0 && bytes.Equal(prev, k)) {
		return fmt.Errorf("key %d (%x) out of order after %x", i, k, prev)
	}
	if hi != nil && bytes.Compare(k, hi) >= 0 {
		return fmt.Errorf("key %d (%x) not below its parent's next key %x", i, k, hi)
	}
	return nil
}
