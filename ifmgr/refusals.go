package ifmgr

import (
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
)

// Default bounds of the backoff between attempts at a refused action.
const (
	DefaultRetryMin = time.Second
	DefaultRetryMax = 2 * time.Minute
)

// refusals remembers the actions of a plan that were refused (by the kernel:
// EXFULL from a full bridge, EOPNOTSUPP from a port that cannot be bridged,
// EINVAL; by the DB: a full disk; by the allocator: no unit left). Without
// it every convergence, and so every link event, tried them again: a bridge
// with 1023 ports and 7 more matching ones turned a stream of unrelated
// events into a hot loop of refused joins and an ERROR line per attempt.
//
// A refused action is tried again when the state its answer depends on
// changes (its grounds: the port, its bridge and how many ports that has,
// the VLAN's parent, the unit space), at once, or else after a capped
// exponential backoff. A refusal is logged when it starts or its error
// changes and when it ends, never per attempt. Owner goroutine only.
type refusals struct {
	byAction map[string]*refusal // by plan.Action.String()
	min, max time.Duration
}

type refusal struct {
	action   plan.Action
	err      error
	grounds  string // the observed state the answer depended on
	attempts int
	since    time.Time // first refused (with this error)
	next     time.Time // not tried again before this, unless the grounds change
}

func newRefusals(lo, hi time.Duration) refusals {
	if lo <= 0 {
		lo = DefaultRetryMin
	}
	if hi <= 0 {
		hi = DefaultRetryMax
	}
	return refusals{byAction: map[string]*refusal{}, min: lo, max: max(lo, hi)}
}

// due reports whether action a, whose answer depends on grounds, should be
// tried now.
func (rs *refusals) due(a plan.Action, grounds string, now time.Time) bool {
	r := rs.byAction[a.String()]
	return r == nil || r.grounds != grounds || !now.Before(r.next)
}

// record notes what became of an attempt at an action and logs the change,
// if any: a new refusal, a refusal whose error changed, a refusal that ended.
func (rs *refusals) record(res ActionResult, grounds string, now time.Time, log *slog.Logger, why string) {
	key := res.Action.String()
	r := rs.byAction[key]
	if res.Done() {
		if r != nil {
			delete(rs.byAction, key)
			log.Info("refused action done", "action", key, "attempts", r.attempts+1, "refused_for", now.Sub(r.since).Round(time.Millisecond), "trigger", why)
		}
		return
	}
	switch {
	case r == nil || r.err.Error() != res.Err.Error():
		r = &refusal{action: *res.Action, since: now}
		rs.byAction[key] = r
		log.Error("action refused; retried with backoff and when what it depends on changes", "action", key, "err", res.Err, "trigger", why)
	case r.grounds != grounds:
		r.attempts = 0 // what it depends on moved: it may move again soon
	}
	r.err, r.grounds = res.Err, grounds
	r.attempts++
	backoff := rs.min
	for i := 1; i < r.attempts && backoff < rs.max; i++ {
		backoff *= 2
	}
	r.next = now.Add(min(backoff, rs.max))
}

// keepOnly forgets the refusals of actions no longer planned: what the
// profile no longer wants, or what something else already did.
func (rs *refusals) keepOnly(planned map[string]bool, log *slog.Logger) {
	for key, r := range rs.byAction {
		if !planned[key] {
			delete(rs.byAction, key)
			log.Info("refused action no longer planned", "action", key, "attempts", r.attempts)
		}
	}
}

// expedite makes every refused action due now: an operator asked for a
// resync or a reload, and expects everything tried.
func (rs *refusals) expedite() {
	for _, r := range rs.byAction {
		r.next = time.Time{}
	}
}

// nextDue is when the earliest refused action is due again (zero: none).
func (rs *refusals) nextDue() time.Time {
	var next time.Time
	for _, r := range rs.byAction {
		if next.IsZero() || r.next.Before(next) {
			next = r.next
		}
	}
	return next
}

// RefusalReport is an action that keeps being refused, for status.
type RefusalReport struct {
	Action    string    `json:"action"`
	Error     string    `json:"error"`
	Attempts  int       `json:"attempts"`
	Since     time.Time `json:"since"`      // refused with this error since
	NextRetry time.Time `json:"next_retry"` // or at once when what it depends on changes
}

func (rs *refusals) report() []RefusalReport {
	out := make([]RefusalReport, 0, len(rs.byAction))
	for key, r := range rs.byAction {
		out = append(out, RefusalReport{Action: key, Error: r.err.Error(), Attempts: r.attempts, Since: r.since, NextRetry: r.next})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Action < out[j].Action })
	return out
}

// groundsOf describes the observed state the answer to action a depends on:
// the link it acts on, the bridge it joins (with its number of ports, which
// a full bridge's answer depends on), a VLAN's parent, and the unit space of
// the cloner a create allocates from. members counts ports per bridge ifindex.
func (m *Manager) groundsOf(a plan.Action, members map[uint32]int) string {
	var b strings.Builder
	link := func(index uint32) {
		l, ok := m.links.get(index)
		if !ok {
			fmt.Fprintf(&b, "[%d absent]", index)
			return
		}
		fmt.Fprintf(&b, "[%d %s %s up=%t master=%d link=%d ports=%d]", l.Index, l.Name, l.Kind, l.Flags&iffUp != 0, l.Master, l.IfLink, members[l.Index])
	}
	bridge := func(identity string) {
		if e := m.entries.withIdentity(identity); e != nil && e.index != 0 {
			link(e.index)
			return
		}
		b.WriteString("[no bridge " + identity + "]")
	}
	switch a.Kind {
	case plan.Create:
		if a.Target.ParentIndex != 0 {
			link(a.Target.ParentIndex)
		}
		if a.Target.Master != "" {
			bridge(a.Target.Master)
		}
		if al := m.alloc[a.Target.Cloner]; al != nil {
			fmt.Fprintf(&b, "[units %d+%d]", al.Allocated(), al.HeldCount())
		}
	default:
		link(a.Link)
		if a.Master != "" {
			bridge(a.Master)
		}
	}
	return b.String()
}

// bridgePorts counts the ports of every bridge, by the bridge's ifindex.
func (m *Manager) bridgePorts() map[uint32]int {
	n := map[uint32]int{}
	m.links.each(func(l kernel.Link) {
		if l.Master != 0 {
			n[l.Master]++
		}
	})
	return n
}
