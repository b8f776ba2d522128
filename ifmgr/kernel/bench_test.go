package kernel

import (
	"errors"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

func BenchmarkCreateDeleteBridge(b *testing.B) {
	c := dial(b)
	for b.Loop() {
		l, err := c.CreateBridge("bcd0", 1)
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Delete(l.Index); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLinks dumps with ~500 links present: 250 veth pairs (see
// createVeth for why not bridges), left for the namespace's teardown.
func BenchmarkLinks(b *testing.B) {
	c := dial(b)
	for i := range 250 {
		if err := newVeth(c, fmt.Sprintf("bla%d", i), fmt.Sprintf("blb%d", i), 1); err != nil && !errors.Is(err, unix.EEXIST) {
			b.Fatal(err)
		}
	}
	var n int
	for b.Loop() {
		links, err := c.Links()
		if err != nil {
			b.Fatal(err)
		}
		n = len(links)
	}
	b.ReportMetric(float64(n), "links")
}
