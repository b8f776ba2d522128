package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	"github.com/uroute/uroute/internal/benchkit"
)

// Latency is the time from a link's first RTM_NEWLINK to its derived
// bridge up with the link in it, over Events events, in milliseconds.
type Latency struct {
	Who    string  `json:"who"`
	Events int     `json:"events"`
	P50    float64 `json:"p50_ms"`
	P99    float64 `json:"p99_ms"`
	Max    float64 `json:"max_ms"`
}

// latency plugs links one at a time. "kernel" is the bench itself doing the
// same four requests ifmgrd's plan needs (create the bridge, up, enslave the
// port, port up) as soon as it sees the link: the kernel's own time plus one
// event's delivery. "ifmgrd" is the daemon with the per-port profile. The
// difference is ifmgr's overhead.
func (b *bench) latency() error {
	kernelLat, err := b.latencyRun(false)
	if err != nil {
		return fmt.Errorf("latency (kernel): %w", err)
	}
	ifmgrLat, err := b.latencyRun(true)
	if err != nil {
		return fmt.Errorf("latency (ifmgrd): %w", err)
	}
	k, m := summarize("kernel: the bench's own 4 requests", kernelLat), summarize("ifmgrd (profile, per-port bridge)", ifmgrLat)
	over := Latency{Who: "ifmgr overhead (difference)", Events: m.Events, P50: m.P50 - k.P50, P99: m.P99 - k.P99, Max: m.Max - k.Max}
	b.rep.Latency = append(b.rep.Latency, k, m, over)
	return nil
}

func summarize(who string, ds []time.Duration) Latency {
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	return Latency{Who: who, Events: len(ds), P50: ms(benchkit.Percentile(ds, 50)), P99: ms(benchkit.Percentile(ds, 99)), Max: ms(benchkit.Percentile(ds, 100))}
}

func (b *bench) latencyRun(daemon bool) ([]time.Duration, error) {
	b.seq++
	ns, err := benchkit.NewNS(runNS)
	if err != nil {
		return nil, err
	}
	r := &runCtx{n: b.c.Events, ns: ns, peers: b.c.Events,
		sock: b.c.path(fmt.Sprintf("ifmgr-%d.sock", b.seq)), db: b.c.path(fmt.Sprintf("ifmgr-%d.db", b.seq))}
	defer os.Remove(r.db)
	lat, err := b.latencyIn(r, daemon)
	stopDaemon(r)
	if r.w != nil {
		r.w.Close()
	}
	ns.Delete()
	if serr := b.settle(r.peers); err == nil {
		err = serr
	}
	return lat, err
}

func (b *bench) latencyIn(r *runCtx, daemon bool) ([]time.Duration, error) {
	var err error
	if r.w, err = benchkit.NewWatch(r.ns); err != nil {
		return nil, err
	}
	if daemon {
		prof, err := b.profilePath()
		if err != nil {
			return nil, err
		}
		if err := b.startDaemon(r, filepath.Join(b.c.Bin, "ifmgrd"), nil, "--config", prof); err != nil {
			return nil, err
		}
		if err := waitSocket(r.sock, time.Minute); err != nil {
			return nil, err
		}
	}
	// One ip process fed line by line plugs the links, so no process start
	// sits between two events.
	plug := exec.Command("ip", "-n", r.ns.Name, "-batch", "-")
	in, err := plug.StdinPipe()
	if err != nil {
		return nil, err
	}
	plug.Stderr = os.Stderr
	if err := plug.Start(); err != nil {
		return nil, err
	}
	defer func() { in.Close(); plug.Wait() }()
	bw := bufio.NewWriter(in)
	r.w.Expect(benchkit.BridgedPorts("lan", 1<<30))
	if _, err := b.probe.WaitQuiet(2 * time.Minute); err != nil {
		return nil, err
	}
	conn := r.w.Conn()
	var lat []time.Duration
	for i := range r.n {
		port := fmt.Sprintf("lan%d", i)
		fmt.Fprintf(bw, "link add %s type veth peer name peer%d netns %s\n", port, i, peersNS)
		if err := bw.Flush(); err != nil {
			return nil, err
		}
		l, seen, err := r.w.WaitSeen(port, time.Minute)
		if err != nil {
			return nil, err
		}
		if !daemon {
			br, err := conn.CreateBridge(fmt.Sprintf("br%d", i), ownerGroup)
			if err == nil {
				err = conn.SetUp(br.Index, true)
			}
			if err == nil {
				err = conn.SetMaster(l.Index, br.Index)
			}
			if err == nil {
				err = conn.SetUp(l.Index, true)
			}
			if err != nil {
				return nil, err
			}
		}
		met, err := r.w.WaitMet(port, time.Minute)
		if err != nil {
			return nil, err
		}
		lat = append(lat, met.Sub(seen))
	}
	return lat, nil
}
