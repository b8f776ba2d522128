package board

import (
	"errors"
	"strconv"
	"strings"
	"testing"
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
