package main

import (
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr"
)

// steady is the samples of a soak that leaks nothing: 16 known ports, the
// reservations at their plateau from the start (fillReservations), RSS,
// goroutines, fds and the DB flat, one sample every 5 s for 100 s.
func steady() *soak {
	const k = 16
	s := &soak{k: k, newIDs: ifmgr.DefaultMaxAbsent + 20}
	for i := 0; i <= 20; i++ {
		s.samples = append(s.samples, sample{T: float64(5 * i), Cycles: i, RSS: 13 << 20,
			Goroutines: 11, FDs: 12, DBBytes: 256 << 10, Allocated: k + ifmgr.DefaultMaxAbsent, Managed: k})
	}
	return s
}

// The soak is CI's check that years of churn leak nothing: each promise
// of issue 11 broken alone must fail it, with a line that names it.
func TestJudgeFailsOnEachViolation(t *testing.T) {
	s := steady()
	var sum Summary
	s.judge(&sum)
	if len(sum.Failures) != 0 {
		t.Fatalf("a soak that leaks nothing failed: %q", sum.Failures)
	}
	for _, c := range []struct {
		name  string
		spoil func(s *soak)
		want  string
	}{
		{"commits for known hardware", func(s *soak) { s.known = 1 }, "DB commits for flaps, MAC changes and replugs of known identities"},
		{"RSS grows 1 MiB", func(s *soak) {
			for i := range s.samples[len(s.samples)-3:] {
				s.samples[len(s.samples)-3+i].RSS += 1 << 20
			}
		}, "RSS grew"},
		{"a goroutine more", func(s *soak) { s.samples[len(s.samples)-1].Goroutines++ }, "goroutines varied"},
		{"an fd more", func(s *soak) { s.samples[len(s.samples)/2].FDs++ }, "open fds varied"},
		{"a unit leaked", func(s *soak) { s.samples[len(s.samples)-1].Allocated += 2 }, "units in use at the end"},
		{"a unit held", func(s *soak) { s.samples[len(s.samples)-1].Held = 1 }, "held by foreign interfaces"},
		{"a bridge missing", func(s *soak) { s.samples[len(s.samples)-1].Managed-- }, "bridges present at the end"},
		{"the DB grows", func(s *soak) { s.samples[len(s.samples)-1].DBBytes = 1 << 20 }, "DB grew"},
		{"too short to judge", func(s *soak) { s.samples = s.samples[:3] }, "too few samples"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := steady()
			c.spoil(s)
			var sum Summary
			s.judge(&sum)
			if len(sum.Failures) == 0 {
				t.Fatalf("passed")
			}
			if !strings.Contains(strings.Join(sum.Failures, "\n"), c.want) {
				t.Errorf("failures %q do not say %q", sum.Failures, c.want)
			}
		})
	}
}
