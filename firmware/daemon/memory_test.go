package daemon

import (
	"runtime/metrics"
	"testing"
)

// The trimmer gives memory back only after a quiet tick, and only when
// enough is reclaimable, both relative to the live heap; a busy tick (a
// bring-up in progress) never trims.
func TestTrimmerTrimsOnlyWhenIdleAndWorthIt(t *testing.T) {
	var allocs, reclaimable, live uint64
	tr := &trimmer{read: func() (uint64, uint64, uint64) { return allocs, reclaimable, live }}
	steps := []struct {
		alloc, reclaimable, live uint64
		want                     bool
		what                     string
	}{
		{64 << 20, 40 << 20, 10 << 20, false, "busy: a bring-up allocating"},
		{32 << 20, 60 << 20, 10 << 20, false, "still busy"},
		{4 << 10, 60 << 20, 10 << 20, true, "quiet after the burst, much to give back"},
		{4 << 10, 100 << 10, 10 << 20, false, "quiet, nothing worth a collection"},
		{100 << 10, 3 << 20, 1 << 20, true, "a trickle of events, garbage piled up"},
		{trimQuiet, 8 << 20, 1 << 20, false, "a small heap: a tick allocating trimQuiet is not quiet"},
		{2 << 20, 8 << 20, 10 << 20, true, "kernel news after a bring-up: idle next to a 10 MB heap"},
		{3 << 20, 8 << 20, 10 << 20, false, "a quarter of the live heap in a tick is busy"},
		{4 << 10, 2 << 20, 10 << 20, false, "quiet, but under a quarter of the live heap to reclaim"},
		{4 << 10, 3 << 20, 10 << 20, true, "quiet, a quarter of the live heap to reclaim"},
		{4 << 10, 900 << 10, 1 << 20, false, "quiet, a small heap: under trimMin is not worth a collection"},
	}
	for _, s := range steps {
		allocs += s.alloc
		reclaimable, live = s.reclaimable, s.live
		if got := tr.due(); got != s.want {
			t.Errorf("%s: due() = %v, want %v", s.what, got, s.want)
		}
	}
}

// The runtime's figures the trimmer reads exist in this Go, as counts of
// bytes: a name runtime/metrics does not know reads as KindBad, and the
// trimmer would never trim.
func TestTrimmerReadsTheRuntime(t *testing.T) {
	samples := []metrics.Sample{{Name: metricAllocs}, {Name: metricObjects}, {Name: metricLive}, {Name: metricFree}}
	metrics.Read(samples)
	for _, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			t.Errorf("runtime/metrics %q: kind %v, want uint64", s.Name, s.Value.Kind())
		}
	}
}
