package ifmgr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"github.com/uroute/uroute/ifmgr/kernel"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr/plan"
)

// A refused action backs off exponentially up to the cap, is due at once
// when its grounds change, and is logged when it starts, when its error
// changes and when it ends: never per attempt.
func TestRefusalBackoffAndLogging(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rs := newRefusals(time.Second, 8*time.Second)
	a := plan.Action{Kind: plan.SetMaster, Link: 7, Name: "lan7", Master: "rule=bridge/lan", Why: "port rule lan"}
	exfull := ActionResult{Action: &a, Err: errors.New("exchange full")}
	now := time.Unix(1000, 0)

	if !rs.due(a, "g1", now) {
		t.Fatal("an action never refused is not due")
	}
	var gaps []time.Duration
	for i := 0; i < 6; i++ {
		rs.record(exfull, "g1", now, log, "test")
		next := rs.nextDue()
		gaps = append(gaps, next.Sub(now))
		if rs.due(a, "g1", next.Add(-time.Millisecond)) {
			t.Fatalf("attempt %d: due before its backoff ends", i+1)
		}
		if !rs.due(a, "g2", now) {
			t.Fatalf("attempt %d: not due at once when its grounds changed", i+1)
		}
		now = next
	}
	want := []time.Duration{1, 2, 4, 8, 8, 8}
	for i := range want {
		if gaps[i] != want[i]*time.Second {
			t.Fatalf("backoffs %v, want %v seconds", gaps, want)
		}
	}
	if n := strings.Count(logs.String(), "\n"); n != 1 {
		t.Fatalf("6 attempts with one error logged %d lines, want 1:\n%s", n, logs.String())
	}
	rs.record(ActionResult{Action: &a, Err: errors.New("operation not supported")}, "g1", now, log, "test")
	if n := strings.Count(logs.String(), "\n"); n != 2 {
		t.Fatalf("a changed error logged %d lines in all, want 2", n)
	}
	if got := rs.nextDue().Sub(now); got != time.Second {
		t.Errorf("a changed error backs off %v, want to start over at 1s", got)
	}
	rs.record(ActionResult{Action: &a}, "g1", now, log, "test")
	if len(rs.byAction) != 0 || !rs.nextDue().IsZero() || !strings.Contains(logs.String(), "refused action done") {
		t.Errorf("a done action still counted as refused: %v\n%s", rs.report(), logs.String())
	}
	rs.record(exfull, "g1", now, log, "test")
	rs.keepOnly(map[string]bool{}, log)
	if len(rs.byAction) != 0 {
		t.Error("a refusal of an action no longer planned is kept")
	}
}

// With the disk full, a new port's bridge cannot be recorded, so it is not
// made. Once space is freed it is made by the retry alone: no link event,
// no resync (before, nothing happened until an unrelated event or the
// 5-minute resync).
func TestFailedCommitRetried(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	s.fail = errors.New("write: no space left on device")
	h := startConfig(t, k, s, Config{Cloners: testCloners(t, DefaultMaxUnit), Profile: mustProfile(t, testProfile),
		RetryMin: 5 * time.Millisecond, RetryMax: 20 * time.Millisecond})
	k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01")})
	waitStatus(t, h.m, func(st Status) bool {
		for _, r := range st.Refused {
			if strings.Contains(r.Error, "no space left") && r.Attempts >= 3 {
				return true
			}
		}
		return false
	})
	if st, _ := h.m.Status(context.Background()); st.Managed["bridge"] != 0 {
		t.Fatalf("a bridge was made without its record: %+v", st.Managed)
	} else if st.Converged || st.Pending == 0 {
		// What a trial boot's mark-good reads: a refused action is not
		// convergence.
		t.Fatalf("converged %v with %d actions pending and %d refused", st.Converged, st.Pending, len(st.Refused))
	}
	s.mu.Lock()
	s.fail = nil
	s.mu.Unlock()
	waitStatus(t, h.m, func(st Status) bool {
		return st.Managed["bridge"] == 2 && st.Managed["vlan"] == 2 && len(st.Refused) == 0
	})
	// Applied in full: converged (once the kernel's echoes of the
	// changes have been read).
	waitStatus(t, h.m, func(st Status) bool { return st.Converged && st.Pending == 0 })
}

// A port that a plan brings up and joins goes up and joins in one message
// once its bridge is made; with the disk full the bridge is not made, and
// the port still goes up (apply sends the up alone when the commit fails;
// a later round, whose plan has no create due, would too).
func TestFailedCommitStillBringsPortsUp(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	s.fail = errors.New("write: no space left on device")
	p := mustProfile(t, strings.Replace(testProfile, "vlans = [10, 20]\nvlan_bridge = { 10 = \"guest\" }\n", "", 1))
	h := startConfig(t, k, s, Config{Cloners: testCloners(t, DefaultMaxUnit), Profile: p,
		RetryMin: time.Hour, RetryMax: time.Hour})
	k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01")})
	waitStatus(t, h.m, func(st Status) bool { return len(st.Refused) > 0 })
	h.settle()
	if l := k.names()["eth0"]; l.Flags&iffUp == 0 || l.Master != 0 {
		t.Errorf("eth0 with its bridge unmade: flags %#x master %d, want up and no master", l.Flags, l.Master)
	}
}

// Per-port units exhausted (max 9, 15 ports): before, about 1000 ERROR/WARN
// lines at start and ~26 more per unrelated carrier flap. Now each port
// without a unit is one refusal, logged once; a flap of an unrelated link
// logs nothing and tries nothing.
func TestUnitsExhaustedLoggedOnce(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	var logs syncLog
	p := mustProfile(t, `
board = "exhausted"
[[port]]
name = "usb"
match.name = "usb*"
bridge = "tether"
[[bridge]]
name = "tether"
per_port = true
[cloners.bridge]
template = "bridge%d"
max = 9
`)
	for i := 0; i < 15; i++ {
		k.add(kernel.Link{Name: fmt.Sprintf("usb%d", i), MAC: mac(fmt.Sprintf("02:00:00:00:01:%02x", i))})
	}
	other, _ := k.add(kernel.Link{Name: "wan0", MAC: mac("02:00:00:00:02:01")})
	h := startConfig(t, k, s, Config{Cloners: testCloners(t, 9), Profile: p, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	h.settle()
	st, _ := h.m.Status(context.Background())
	if len(st.Refused) != 5 {
		t.Fatalf("%d refusals, want 5 (15 ports, units 0-9 of which the 10 bridges take all): %+v", len(st.Refused), st.Refused)
	}
	complaints := func() int {
		n := 0
		for _, line := range strings.Split(logs.String(), "\n") {
			if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
				n++
			}
		}
		return n
	}
	if n := complaints(); n != 5 {
		t.Errorf("start logged %d ERROR/WARN lines, want 5 (one per port without a unit):\n%s", n, logs.String())
	}
	for i := 0; i < 20; i++ {
		k.modify(other.Index, func(l *kernel.Link) { l.Flags ^= 0x10000 }) // carrier flap
	}
	h.m.Status(context.Background()) // drains the events delivered
	if n := complaints(); n != 5 {
		t.Errorf("20 unrelated flaps added %d ERROR/WARN lines:\n%s", n-5, logs.String())
	}
}

type syncLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncLog) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncLog) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// A resync whose dump fails (the kernel kept interrupting it) is tried
// again soon, not at the next event or periodic resync: the events it
// stood for are lost, and after a storm no other event may come. Before
// the retry, the port below stayed out of its bridge until something
// else happened.
func TestFailedResyncIsRetried(t *testing.T) {
	k, s := newFakeKernel(), newFakeStore()
	h := startWithProfile(t, k, s, mustProfile(t, testProfile))
	h.settle()
	k.mu.Lock()
	k.muted, k.failDumps = true, 3
	k.mu.Unlock()
	eth, _ := k.add(kernel.Link{Name: "eth0", PermMAC: mac("52:54:00:00:00:01"), MAC: mac("52:54:00:00:00:01")})
	k.mu.Lock()
	k.muted = false
	k.mu.Unlock()
	k.events <- []kernel.Event{{Type: kernel.EventResync}} // the overrun that lost eth0's events
	waitStatus(t, h.m, func(st Status) bool { return st.Managed["vlan"] == 2 })
	l, _ := k.LinkByIndex(eth.Index)
	if br := k.names()["bridge1"]; br.Index == 0 || l.Master != br.Index {
		t.Errorf("eth0 not a port of the lan bridge after the retried resync: master %d", l.Master)
	}
	k.mu.Lock()
	left := k.failDumps
	k.mu.Unlock()
	if left != 0 {
		t.Errorf("%d failing dumps never tried", left)
	}
}
