package board

import (
	"errors"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/uroute/uroute/persist"
)

// Templates whose rendered names can collide are refused at the line of the
// VLAN template: "br10" would be bridge 10 and VLAN 0 at once.
func TestOverlappingTemplatesRefused(t *testing.T) {
	tests := []struct {
		name             string
		bridge, vlan     string
		bridgeMax, vlMax int
		want             string // "" = accepted
	}{
		{"prefix plus digit", "br%d", "br1%d", 32767, 32767, `t.toml:6: cloners.vlan: template: "br1%d" renders "br10" (unit 0), which "br%d" renders too (unit 10): their names would collide`},
		{"same template", "br%d", "br%d", 32767, 32767, `renders "br0" (unit 0), which "br%d" renders too (unit 0)`},
		{"out of range cannot collide", "br%d", "br1%d", 9, 32767, ""},
		{"suffix tells apart", "br%d", "br%dx", 32767, 32767, ""},
		{"prefix tells apart", "b%d", "br%d", 32767, 32767, ""},
		{"digit suffix", "br%d", "br%d0", 32767, 32767, `renders "br10" (unit 1), which "br%d" renders too (unit 10)`},
		{"leading zero never rendered", "br%d", "br0%d", 32767, 32767, ""},
		{"suffix digits", "x%d1", "x1%d", 32767, 32767, `which "x%d1" renders too`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			doc := "board = \"t\"\n[cloners.bridge]\ntemplate = \"" + tc.bridge + "\"\nmax = " + strconv.Itoa(tc.bridgeMax) +
				"\n[cloners.vlan]\ntemplate = \"" + tc.vlan + "\"\nmax = " + strconv.Itoa(tc.vlMax) + "\n"
			_, err := Parse("t.toml", []byte(doc))
			if tc.want == "" {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

// Rule names go into identities, and identities into the kernel's 255-byte
// alias: a bridge or port rule name of persist.MaxRuleNameLen bytes is
// accepted, one byte more is refused at its line.
func TestRuleNameBound(t *testing.T) {
	max := persist.MaxRuleNameLen
	if max < 32 {
		t.Fatalf("MaxRuleNameLen = %d: too short for a readable rule name", max)
	}
	doc := func(bridge, port string) string {
		return "board = \"t\"\n[[bridge]]\nname = \"" + bridge + "\"\nper_port = true\n[[port]]\nname = \"" + port + "\"\nmatch.name = \"lan*\"\nbridge = \"" + bridge + "\"\nvlans = [4094]\n"
	}
	longest := strings.Repeat("b", max)
	if _, err := Parse("t.toml", []byte(doc(longest, strings.Repeat("p", max)))); err != nil {
		t.Fatalf("names of %d bytes refused: %v", max, err)
	}
	tooLong := strings.Repeat("b", max+1)
	_, err := Parse("t.toml", []byte(doc(tooLong, strings.Repeat("p", max+1))))
	errs := allErrors(t, err)
	want := []string{
		`t.toml:3: bridge #1: name: "` + tooLong + `" is ` + strconv.Itoa(max+1) + ` bytes, longer than ` + strconv.Itoa(max),
		`t.toml:6: port #1: name: "` + strings.Repeat("p", max+1) + `" is ` + strconv.Itoa(max+1) + ` bytes, longer than ` + strconv.Itoa(max),
	}
	if len(errs) < len(want) {
		t.Fatalf("names of %d bytes: got %v, want %d errors", max+1, err, len(want))
	}
	for i, w := range want {
		if !strings.Contains(errs[i].Error(), w) {
			t.Errorf("error %d = %q, want it to contain %q", i, errs[i], w)
		}
	}
}

// README.md states the limit; this test is what keeps the figure true.
func TestReadmeStatesRuleNameBound(t *testing.T) {
	doc, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	want := "at most " + strconv.Itoa(persist.MaxRuleNameLen) + " bytes"
	if n := strings.Count(string(doc), want); n < 3 {
		t.Fatalf("README.md says %q %d times, want it in the format (2) and in Identities", want, n)
	}
}
