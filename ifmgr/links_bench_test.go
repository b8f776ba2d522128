package ifmgr

import (
	"fmt"
	"net"
	"runtime"
	"testing"

	"github.com/uroute/uroute/ifmgr/kernel"
)

// BenchmarkLinkTable8000Retained is what the link table keeps at 4000 ports
// with a per-port bridge each (8000 links, each with its sysfs facts and
// address texts, as a converged ifmgrd has them): retained-B is the live heap
// it holds (runtime.ReadMemStats after a GC, the decoded links it was given
// excluded). The time is a resync's replace plus every link's facts and
// addresses.
func BenchmarkLinkTable8000Retained(b *testing.B) {
	const ports = 4000
	links := make([]kernel.Link, 0, 2*ports)
	for i := range ports {
		mac := net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)}
		links = append(links,
			kernel.Link{Index: uint32(2 + 2*i), Name: fmt.Sprintf("veth%d", i), Kind: "veth", MAC: mac, Flags: 1},
			kernel.Link{Index: uint32(3 + 2*i), Name: fmt.Sprintf("bridge%d", i), Kind: kernel.KindBridge, MAC: mac, Group: 7,
				Alias: fmt.Sprintf("uroute:rule=bridge:lan,mac=02:00:00:00:%02x:%02x", i>>8, i&0xff), Flags: 1})
	}
	read := func(string) (string, string) { return "veth", "" }
	b.ReportAllocs()
	var retained uint64
	for range b.N {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		lt := newLinkTable()
		lt.replace(links)
		for _, l := range links {
			lt.factsOf(l, read)
			lt.macsOf(l)
		}
		lt.takeChanged()
		runtime.GC()
		runtime.ReadMemStats(&after)
		retained += after.HeapAlloc - before.HeapAlloc
		runtime.KeepAlive(&lt)
	}
	b.ReportMetric(float64(retained)/float64(b.N), "retained-B")
}
