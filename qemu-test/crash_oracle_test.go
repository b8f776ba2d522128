package qemutest

import (
	"strings"
	"testing"

	"github.com/uroute/uroute/persist"
	"github.com/uroute/uroute/qemu-test/logwrites"
)

// TestCrashOracle checks TestCrash's judge on a made-up log of marks (no
// QEMU): what a crash state must hold, may hold and must not hold at each
// cut.
func TestCrashOracle(t *testing.T) {
	marks := []string{
		"p|bridge|0|rule=lan",           // 0
		"q|0.1|+|bridge",                // 1
		"c|0.1|+|bridge|1|name=bridge1", // 2
		"q|0.2|-|bridge|1",              // 3
		"c|0.2|-|bridge|1|name=bridge1", // 4
		"q|1.1|+|vlan",                  // 5
		"c|1.1|+|vlan|3|name=vlan3",     // 6
		"end",                           // 7
	}
	l := &logwrites.Log{SectorSize: 512}
	for i, m := range marks {
		l.Entries = append(l.Entries, logwrites.Entry{Index: i, Flags: logwrites.Mark, Mark: m})
	}
	o, err := newCrashOracle(l)
	if err != nil {
		t.Fatal(err)
	}
	if !o.ended || o.marks != len(marks) || len(o.allocs) != 2 {
		t.Fatalf("oracle: ended %v, %d marks, %d allocations", o.ended, o.marks, len(o.allocs))
	}
	lan := persist.Record{Cloner: "bridge", Unit: 0, Identity: persist.Identity{Rule: "lan"}}
	b1 := persist.Record{Cloner: "bridge", Unit: 1, Identity: persist.Identity{Name: "bridge1"}}
	v3 := persist.Record{Cloner: "vlan", Unit: 3, Identity: persist.Identity{Name: "vlan3"}}
	stranger := persist.Record{Cloner: "bridge", Unit: 9, Identity: persist.Identity{Name: "bridge9"}}
	dupID := persist.Record{Cloner: "bridge", Unit: 7, Identity: persist.Identity{Rule: "lan"}}
	for _, tc := range []struct {
		cut  int
		recs []persist.Record
		want string // substring of the one violation, "" for none
	}{
		{0, nil, ""},
		{1, nil, "lost bridge/0"},
		{1, []persist.Record{lan}, ""},
		{2, []persist.Record{lan}, ""},     // create of bridge1 sent, not answered
		{2, []persist.Record{lan, b1}, ""}, // ... or already committed
		{3, []persist.Record{lan}, "lost bridge/1"},
		{4, []persist.Record{lan}, ""}, // destroy sent: either
		{4, []persist.Record{lan, b1}, ""},
		{5, []persist.Record{lan, b1}, "still recorded, its destroy confirmed"},
		{5, []persist.Record{lan}, ""},
		{1, []persist.Record{lan, v3}, "no request sent before the cut"},
		{8, []persist.Record{lan, v3}, ""},
		{8, []persist.Record{lan}, "lost vlan/3"},
		{8, []persist.Record{lan, v3, stranger}, "no request sent before the cut"},
		{8, []persist.Record{lan, v3, dupID}, "identity rule=lan recorded for both"},
	} {
		v, _ := o.check(tc.cut, tc.recs)
		var got string
		if len(v) > 0 {
			got = strings.Join(v, "; ")
		}
		if tc.want == "" && len(v) != 0 || tc.want != "" && !strings.Contains(got, tc.want) {
			t.Errorf("cut %d, %d records: violations %q, want %q", tc.cut, len(tc.recs), got, tc.want)
		}
	}
}
