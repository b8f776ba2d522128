package ifmgr

import (
	"math/rand/v2"
	"net"
	"strings"
	"testing"
)

// sameMAC agrees with formatting: an address matches its own text and no
// other address's, whatever its length (0 to MAX_ADDR_LEN).
func TestSameMACAgreesWithFormatting(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		a := make(net.HardwareAddr, r.IntN(33))
		for i := range a {
			a[i] = byte(r.IntN(256))
		}
		text := strings.ToLower(a.String())
		if !sameMAC(text, a) {
			t.Fatalf("sameMAC(%q, %v) = false", text, a)
		}
		b := make(net.HardwareAddr, r.IntN(33))
		for i := range b {
			b[i] = byte(r.IntN(256))
		}
		if want := strings.ToLower(b.String()) == text; sameMAC(text, b) != want {
			t.Fatalf("sameMAC(%q, %v) = %v, want %v", text, b, !want, want)
		}
		if len(a) > 0 {
			c := append(net.HardwareAddr(nil), a...)
			c[r.IntN(len(c))] ^= 1 << r.IntN(8)
			if sameMAC(text, c) {
				t.Fatalf("sameMAC(%q, %v) = true", text, c)
			}
		}
	}
}
