package benchkit

import (
	"fmt"
	"time"

	"github.com/uroute/uroute/ifmgr/kernel"
)

// Prober measures how long the kernel takes to give a request the RTNL lock:
// an RTM_SETLINK on the loopback of a namespace of its own. A namespace being
// torn down holds RTNL while it unregisters its links (seen: a 0.26 s
// measurement took 16 s right after an `ip netns del`), so the bench waits
// until the lock answers as fast as it did at the start.
type Prober struct {
	ns       *NS
	conn     *kernel.Conn
	lo       uint32
	Baseline time.Duration
}

// NewProber makes the probe namespace and measures the idle baseline (the
// median of a few probes).
func NewProber(name string) (*Prober, error) {
	ns, err := NewNS(name)
	if err != nil {
		return nil, err
	}
	p := &Prober{ns: ns}
	err = ns.Do(func() error {
		var err error
		p.conn, err = kernel.Dial()
		return err
	})
	if err != nil {
		ns.Delete()
		return nil, err
	}
	lo, err := p.conn.LinkByName("lo")
	if err != nil {
		p.Close()
		return nil, err
	}
	p.lo = lo.Index
	var ds []time.Duration
	for range 21 {
		d, err := p.probe()
		if err != nil {
			p.Close()
			return nil, err
		}
		ds = append(ds, d)
		time.Sleep(5 * time.Millisecond)
	}
	p.Baseline = Percentile(ds, 50)
	return p, nil
}

func (p *Prober) probe() (time.Duration, error) {
	t := time.Now()
	err := p.conn.SetUp(p.lo, true)
	return time.Since(t), err
}

// WaitQuiet waits until five probes in a row take under max(2 ms, 4x the
// baseline), or timeout; it reports how long it waited.
func (p *Prober) WaitQuiet(timeout time.Duration) (time.Duration, error) {
	limit := max(2*time.Millisecond, 4*p.Baseline)
	start := time.Now()
	ok := 0
	for time.Since(start) < timeout {
		d, err := p.probe()
		if err != nil {
			return time.Since(start), err
		}
		if d < limit {
			ok++
			if ok == 5 {
				return time.Since(start), nil
			}
		} else {
			ok = 0
		}
		time.Sleep(20 * time.Millisecond)
	}
	return time.Since(start), fmt.Errorf("RTNL still slow after %v (limit %v)", timeout, limit)
}

// Close removes the probe namespace.
func (p *Prober) Close() {
	if p.conn != nil {
		p.conn.Close()
	}
	p.ns.Delete()
}
