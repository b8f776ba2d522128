package persist

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// mipsFixture is a real DB written by this package on big-endian MIPS
// (under qemu-user); see TestWriteByteOrderFixture. It proves the
// foreign-endian path on a genuine file, not only on a byte-swapped one.
const mipsFixture = "testdata/mips-be.db.gz"

func byteOrderFixtureRecords() []Record {
	return []Record{bridge(0), bridge(1), bridge(300), vlan(2, "eth0", 10), vlan(70000, "eth1", 4094)}
}

// TestWriteByteOrderFixture regenerates the fixture when asked to:
//
//	GOARCH=mips GOMIPS=softfloat go test -c -o /tmp/persist.mips ./persist
//	cd persist && PERSIST_WRITE_FIXTURE=testdata/mips-be.db.gz qemu-mips /tmp/persist.mips -test.run WriteByteOrderFixture
func TestWriteByteOrderFixture(t *testing.T) {
	out := os.Getenv("PERSIST_WRITE_FIXTURE")
	if out == "" {
		t.Skip("set PERSIST_WRITE_FIXTURE to regenerate " + mipsFixture)
	}
	path := filepath.Join(t.TempDir(), "units.db")
	s := mustOpen(t, path)
	mustApply(t, s, byteOrderFixtureRecords(), nil)
	s.Close()
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	zw.Write(readFile(t, path))
	zw.Close()
	writeFile(t, out, buf.Bytes())
}

func TestBigEndianFixture(t *testing.T) {
	zf, err := os.Open(mipsFixture)
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
	opts, _ := testOptions()
	s, rec, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 { // big-endian: the file is native
		if rec != (Recovery{}) {
			t.Fatalf("native file recovered: %+v", rec)
		}
		if got := mustRecords(t, s); !slices.Equal(got, byteOrderFixtureRecords()) {
			t.Fatalf("Records = %v", got)
		}
		return
	}
	if !errors.Is(rec.Reason, errForeignEndian) {
		t.Fatalf("Recovery = %+v, want the byte-order reason", rec)
	}
	if !bytes.Equal(readFile(t, rec.MovedTo), raw) {
		t.Fatal("moved file differs")
	}
	if got := mustRecords(t, s); len(got) != 0 {
		t.Fatalf("Records = %v", got)
	}
}
