package persist

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// logBuf captures a Store's log lines for assertions.
type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// count returns how many lines mention all of the given substrings.
func (l *logBuf) count(subs ...string) int {
	n := 0
	for line := range strings.SplitSeq(l.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			n++
		}
	}
	return n
}

func testOptions() (Options, *logBuf) {
	lb := &logBuf{}
	return Options{Logger: slog.New(slog.NewTextHandler(lb, &slog.HandlerOptions{Level: slog.LevelDebug}))}, lb
}

func mustOpen(t testing.TB, path string) *Store {
	t.Helper()
	opts, _ := testOptions()
	s, rec, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	if rec != (Recovery{}) {
		t.Fatalf("Open(%s): unexpected recovery %+v", path, rec)
	}
	return s
}

func mustApply(t testing.TB, s *Store, puts []Record, dels []RecordKey) {
	t.Helper()
	if err := s.Apply(puts, dels); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func mustRecords(t testing.TB, s *Store) []Record {
	t.Helper()
	recs, err := s.Records()
	if err != nil {
		t.Fatalf("Records: %v", err)
	}
	return recs
}

func bridge(unit uint32) Record {
	return Record{Cloner: "bridge", Unit: unit, Identity: Identity{Name: fmt.Sprintf("br-%d", unit)}, LastSeen: uint64(unit) * 3}
}

func vlan(unit uint32, parent string, vid uint16) Record {
	return Record{Cloner: "vlan", Unit: unit, Identity: Identity{VID: vid},
		ParentName: parent, VID: vid}
}

func readFile(t testing.TB, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t testing.TB, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// fixtureDB writes a realistic DB: two cloners, enough records for
// multi-page trees, and deletions so the freelist is not empty.
func fixtureDB(t testing.TB) (path string, recs []Record) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "units.db")
	s := mustOpen(t, path)
	var puts []Record
	for u := range uint32(400) {
		puts = append(puts, bridge(u))
	}
	mustApply(t, s, puts, nil)
	puts = nil
	for u := range uint32(60) {
		puts = append(puts, vlan(u, "eth0", uint16(100+u)))
	}
	mustApply(t, s, puts, nil)
	var dels []RecordKey
	for u := uint32(0); u < 400; u += 3 {
		dels = append(dels, RecordKey{"bridge", u})
	}
	mustApply(t, s, nil, dels)
	mustApply(t, s, []Record{bridge(1000)}, []RecordKey{{"vlan", 7}})
	recs = mustRecords(t, s)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return path, recs
}

// activeMeta returns the meta bbolt would use for a native-endian file.
func activeMeta(t testing.TB, b []byte) boltMeta {
	t.Helper()
	m0 := parseMeta(b[0:], ne)
	m1 := parseMeta(b[pageSize:], ne)
	if m0.check() != nil || (m1.check() == nil && m1.txid > m0.txid) {
		return m1
	}
	return m0
}

// bucketRoot finds the root page of top-level bucket name.
func bucketRoot(t testing.TB, b []byte, name string) uint64 {
	t.Helper()
	m := activeMeta(t, b)
	p := b[m.root*pageSize : (m.root+1)*pageSize]
	if ne.Uint16(p[8:]) != flagLeaf {
		t.Fatalf("root page %d is not a leaf", m.root)
	}
	for i := range int(ne.Uint16(p[10:])) {
		e := p[pageHeaderSize+i*elemSize:]
		pos, ksize := ne.Uint32(e[4:]), ne.Uint32(e[8:])
		start := uint32(pageHeaderSize+i*elemSize) + pos
		if string(p[start:start+ksize]) == name {
			root := ne.Uint64(p[start+ksize:])
			if root == 0 {
				t.Fatalf("bucket %q is inline", name)
			}
			return root
		}
	}
	t.Fatalf("bucket %q not found", name)
	return 0
}

func discardLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }

// writeFixture writes recs to a new DB and stores it gzipped where the
// environment variable env says; without it the test is skipped. Fixtures
// are made once, by the code whose files they stand for.
func writeFixture(t *testing.T, env, fixture string, recs []Record) {
	t.Helper()
	out := os.Getenv(env)
	if out == "" {
		t.Skip("set " + env + " to regenerate " + fixture)
	}
	path := filepath.Join(t.TempDir(), "units.db")
	s := mustOpen(t, path)
	mustApply(t, s, recs, nil)
	s.Close()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(readFile(t, path))
	zw.Close()
	writeFile(t, out, buf.Bytes())
}

// openFixture unpacks a gzipped DB fixture into a temporary file and opens
// it, returning the store, what Open recovered, the fixture's bytes and the
// store's log.
func openFixture(t testing.TB, fixture string) (*Store, Recovery, []byte, *logBuf) {
	t.Helper()
	zf, err := os.Open(fixture)
	if err != nil {
		t.Fatal(err)
	}
	defer zf.Close()
	zr, err := gzip.NewReader(zf)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "units.db")
	writeFile(t, path, raw)
	opts, logs := testOptions()
	s, rec, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rec, raw, logs
}
