package persist

import (
	"encoding/binary"
	"encoding/json"
	"slices"
	"testing"
)

// schema1Fixture is a DB written by the code of commit 409b5ad (schema 1),
// before the record fields were renamed (Record.Parent became
// Record.ParentName, Identity.Parent was deleted). The JSON field names are
// what the file holds, so the renames must not lose a unit of it.
const schema1Fixture = "testdata/schema1-409b5ad.db.gz"

// schema1FixtureRecords is every kind of record the 409b5ad daemon wrote:
// ifctl bridges and VLANs (by name), profile bridges (by rule), per-port
// bridges and VLANs (by permanent MAC or bus path), with LastSeen stamps,
// and units up to the default maximum.
func schema1FixtureRecords() []Record {
	return []Record{
		{Cloner: "bridge", Unit: 0, Identity: Identity{Name: "bridge0"}},
		{Cloner: "bridge", Unit: 1, Identity: Identity{Rule: "bridge/lan"}, LastSeen: 3},
		{Cloner: "bridge", Unit: 2, Identity: Identity{Rule: "bridge/guest", PermMAC: "52:54:00:12:34:56"}, LastSeen: 2},
		{Cloner: "bridge", Unit: 32767, Identity: Identity{Name: "bridge32767"}},
		{Cloner: "vlan", Unit: 0, Identity: Identity{Name: "vlan0"}, ParentName: "eth0", VID: 10},
		{Cloner: "vlan", Unit: 5, Identity: Identity{Rule: "port/wan", PermMAC: "52:54:00:ab:cd:ef", VID: 7}, ParentName: "eth1", VID: 7, LastSeen: 3},
		{Cloner: "vlan", Unit: 6, Identity: Identity{Rule: "port/usb", BusPath: "usb-0000:00:14.0-1", VID: 4094}, ParentName: "eth2", VID: 4094, LastSeen: 1},
		{Cloner: "vlan", Unit: 32767, Identity: Identity{Name: "vlan32767"}, ParentName: "lan0", VID: 1},
	}
}

// TestWriteSchema1Fixture regenerated the fixture once, with the 409b5ad
// code; it is kept to show how the file was made, not to be rerun by later
// code (whose writes the fixture exists to check against):
//
//	PERSIST_WRITE_SCHEMA1=testdata/schema1-409b5ad.db.gz go test -run WriteSchema1Fixture ./persist
func TestWriteSchema1Fixture(t *testing.T) {
	writeFixture(t, "PERSIST_WRITE_SCHEMA1", schema1Fixture, schema1FixtureRecords())
}

// TestSchema1FixtureKeepsEveryUnit opens the DB today's firmware's
// predecessor wrote and checks that every record reads back whole.
func TestSchema1FixtureKeepsEveryUnit(t *testing.T) {
	skipSchema1FixtureOnBigEndian(t)
	s, rec, _, logs := openFixture(t, schema1Fixture)
	if rec != (Recovery{}) {
		t.Fatalf("fixture recovered: %+v", rec)
	}
	got := mustRecords(t, s)
	if want := schema1FixtureRecords(); !slices.Equal(got, want) {
		t.Fatalf("Records =\n%+v\nwant\n%+v", got, want)
	}
	if n := logs.count("WARN"); n != 0 {
		t.Fatalf("%d warnings reading the fixture:\n%s", n, logs)
	}
}

// TestIdentityParentIgnored: schema 1's Identity had a "parent" field that
// nothing set; JSON that has one (a record, or an ownership alias on a link)
// still decodes, and the key is what it was without it.
func TestIdentityParentIgnored(t *testing.T) {
	var id Identity
	if err := json.Unmarshal([]byte(`{"rule":"port/lan","mac":"52:54:00:00:00:01","parent":"eth0","vid":10}`), &id); err != nil {
		t.Fatal(err)
	}
	if want := (Identity{Rule: "port/lan", PermMAC: "52:54:00:00:00:01", VID: 10}); id != want {
		t.Fatalf("decoded %+v, want %+v", id, want)
	}
	if got, want := id.Key(), "rule=port/lan,mac=52:54:00:00:00:01,vid=10"; got != want {
		t.Fatalf("Key = %q, want %q", got, want)
	}
}

// skipSchema1FixtureOnBigEndian: the schema-1 fixture is little-endian
// (bbolt's format is native); on big-endian CPUs TestBigEndianFixture
// opens a schema-1 DB written there (migrating it) and checks its records.
func skipSchema1FixtureOnBigEndian(t *testing.T) {
	t.Helper()
	if binary.NativeEndian.Uint16([]byte{0, 1}) == 1 {
		t.Skip("the schema-1 fixture is little-endian (bbolt's format is native): on big-endian CPUs TestBigEndianFixture reads and migrates the schema-1 records")
	}
}
