package persist

import (
	"bytes"
	"encoding/binary"
	"errors"
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
	writeFixture(t, "PERSIST_WRITE_FIXTURE", mipsFixture, byteOrderFixtureRecords())
}

func TestBigEndianFixture(t *testing.T) {
	s, rec, raw, _ := openFixture(t, mipsFixture)
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
