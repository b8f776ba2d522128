package persist

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// The bound is exact: the longest identity shape with a rule name of
// MaxRuleNameLen bytes is exactly MaxAliasLen bytes of alias.
func TestMaxRuleNameLenIsExact(t *testing.T) {
	longest := 0
	for _, w := range worstCases() {
		w.Rule += strings.Repeat("r", MaxRuleNameLen)
		longest = max(longest, len(w.Alias()))
		if back, ok := IdentityFromAlias(w.Alias()); !ok || back != w {
			t.Errorf("alias %q reads back as %+v, %v", w.Alias(), back, ok)
		}
	}
	if longest != MaxAliasLen {
		t.Fatalf("longest worst-case alias %d bytes, want exactly %d", longest, MaxAliasLen)
	}
	t.Logf("MaxRuleNameLen = %d", MaxRuleNameLen)
}

// Fit digests a bus path only when the alias would not fit otherwise.
func TestFitDigestsOnlyWhatDoesNotFit(t *testing.T) {
	short := Identity{Rule: RuleBridge + "usb", BusPath: "pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0", Link: "usb0"}
	if got := short.Fit(); got != short {
		t.Errorf("Fit changed an identity that fits: %+v", got)
	}
	long := short
	long.BusPath = strings.Repeat("pci0000:00/0000:00:14.0/usb1/1-1.2.3.4/", 8)
	got := long.Fit()
	if got.BusPath != BusDigest(long.BusPath) || len(got.Alias()) > MaxAliasLen || got.Link != long.Link || got.Rule != long.Rule {
		t.Errorf("Fit(%d-byte alias) = %+v (%d bytes)", len(long.Alias()), got, len(got.Alias()))
	}
	if got.Fit() != got {
		t.Error("Fit is not idempotent")
	}
	other := long
	other.BusPath += "x"
	if other.Fit().Key() == got.Key() {
		t.Error("two bus paths digest to one identity")
	}
}

// Link is part of the key and of the JSON; a schema-1 record (no link)
// reads as before.
func TestIdentityLink(t *testing.T) {
	id := Identity{Rule: RulePort + "lan", Link: "vp1", VID: 10}
	if got, want := id.Key(), "rule=port/lan,link=vp1,vid=10"; got != want {
		t.Errorf("Key = %q, want %q", got, want)
	}
	b, _ := json.Marshal(id)
	if string(b) != `{"rule":"port/lan","link":"vp1","vid":10}` {
		t.Errorf("JSON %s", b)
	}
	var back Identity
	if err := json.Unmarshal([]byte(`{"rule":"port/lan","bus":"usb-1","vid":10}`), &back); err != nil || back != (Identity{Rule: "port/lan", BusPath: "usb-1", VID: 10}) {
		t.Errorf("schema-1 JSON read as %+v, %v", back, err)
	}
}

// The schema-1 fixture opens as schema 2, every record unchanged; a DB at
// schema 2 is what firmware that knows only schema 1 refuses.
func TestSchema1FixtureMigratedTo2(t *testing.T) {
	skipSchema1FixtureOnBigEndian(t)
	s, _, _, _ := openFixture(t, schema1Fixture)
	if got := mustRecords(t, s); !slices.Equal(got, schema1FixtureRecords()) {
		t.Fatalf("records after migration: %+v", got)
	}
	path := s.Path()
	s.Close()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(tx *bolt.Tx) error {
		v, err := readSchema(tx)
		if err != nil || v != 2 {
			t.Errorf("schema after opening the schema-1 fixture: %d, %v; want 2", v, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}
