package daemon

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"time"
)

// Giving memory back after a burst of work. ifmgrd's work comes in bursts
// (a bring-up of thousands of ports, a resync, a reload) between which it
// idles for hours. Go's collector lets the heap grow to twice what is live
// before it collects, and gives freed pages back to the kernel only slowly
// (its background scavenger), so after a burst the RSS stays at the burst's
// high-water mark, several times what ifmgrd holds: on a router with 64 MB
// of RAM, for nothing. So once the work has stopped (little allocated for a
// whole tick) and enough is reclaimable (garbage not yet collected, or free
// pages not yet returned), ifmgrd collects and returns it at once
// (debug.FreeOSMemory). Both are relative to the live heap: after a
// bring-up of thousands of ports the kernel goes on sending news of them
// for a minute (IPv6 address configuration of every link), megabytes a
// second to read, which is idle next to the bring-up but never "nothing";
// and a trim (one collection of the live heap) is worth it only for a good
// part of that heap. During a burst nothing changes: the collector paces
// itself as usual, and the work is as fast as without this. Idle, a trim
// happens once per burst: afterwards nothing is reclaimable until the next.
const (
	trimEvery = time.Second
	// A tick that allocates less than trimQuiet, or less than a quarter
	// of the live heap, is idle.
	trimQuiet = 512 << 10
	// Less than trimMin reclaimable, or less than a quarter of the live
	// heap, is not worth a collection. A quarter, not a half: after a
	// bring-up of 2000 per-port ports (~5 MB live) a half left 2-2.5 MB
	// of garbage and free pages resident for good (RSS 14.6-16.0 MB in
	// four runs against 14.3-14.9 with a quarter: scripts/bench -only
	// footprint -rss-only -profile-ports 2000). A trim is one collection
	// of the live heap, a few ms; it happens once per quiet spell.
	trimMin = 1 << 20
)

// The runtime/metrics samples trimmer reads.
const (
	metricAllocs  = "/gc/heap/allocs:bytes"              // allocated so far
	metricObjects = "/memory/classes/heap/objects:bytes" // live and not yet collected
	metricLive    = "/gc/heap/live:bytes"                // live at the last collection
	metricFree    = "/memory/classes/heap/free:bytes"    // free pages still held
)

// trimmer decides when to give memory back; it reads the runtime's figures
// through read, so its rule is tested without a runtime in that state.
type trimmer struct {
	read       func() (allocs, reclaimable, live uint64)
	lastAllocs uint64
}

func newTrimmer() *trimmer {
	samples := []metrics.Sample{{Name: metricAllocs}, {Name: metricObjects}, {Name: metricLive}, {Name: metricFree}}
	t := &trimmer{read: func() (uint64, uint64, uint64) {
		metrics.Read(samples)
		allocs, objects, live, free := samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64(), samples[3].Value.Uint64()
		garbage := uint64(0)
		if objects > live {
			garbage = objects - live
		}
		return allocs, garbage + free, live
	}}
	t.lastAllocs, _, _ = t.read()
	return t
}

// due reports whether to trim now: the last tick was quiet and enough can
// be given back.
func (t *trimmer) due() bool {
	allocs, reclaimable, live := t.read()
	quiet := allocs-t.lastAllocs < max(trimQuiet, live/4)
	t.lastAllocs = allocs
	return quiet && reclaimable >= max(trimMin, live/4)
}

// returnMemoryWhenIdle trims every trimEvery tick that is due until ctx
// ends. It is process-wide (the runtime's heap), so Main runs it, not Run.
func returnMemoryWhenIdle(ctx context.Context) {
	t := newTrimmer()
	tick := time.NewTicker(trimEvery)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			if t.due() {
				debug.FreeOSMemory()
				t.lastAllocs, _, _ = t.read() // the collection's own allocations are not work
			}
		}
	}
}
