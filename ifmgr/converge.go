package ifmgr

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/ifmgr/plan"
	"github.com/uroute/uroute/persist"
)

// planLinks describes the observed links to the planner.
func (m *Manager) planLinks() []plan.Link {
	out := make([]plan.Link, 0, m.links.len())
	m.links.each(func(l kernel.Link) { out = append(out, m.planLink(l)) })
	return out
}

// plannerLinks is the link table as the planner reads it (plan.Links):
// each link described when the planner asks, none copied into it.
type plannerLinks struct{ m *Manager }

func (v plannerLinks) Link(index uint32) (plan.Link, bool) {
	l, ok := v.m.links.get(index)
	if !ok {
		return plan.Link{}, false
	}
	return v.m.planLink(l), true
}

func (v plannerLinks) Each(f func(plan.Link)) {
	v.m.links.each(func(l kernel.Link) { f(v.m.planLink(l)) })
}

// planLink describes one link to the planner: ownership and identity from
// ifmgr's entries, driver and bus from sysfs. What it reads of the link
// table and of the entries is what they count as a change of the link
// (linkTable.takeChanged, entryTable.takeRelinked).
func (m *Manager) planLink(l kernel.Link) plan.Link {
	mac, perm := m.links.macsOf(l)
	parent := l.IfLink
	if l.IfLinkOtherNS {
		// An ifindex of another namespace (a veth's peer there, a VLAN's
		// lower device moved away) is no link of this one: not a parent,
		// and not an edge of the planner's graph to whatever link has that
		// number here (one per veth port at thousands of ports).
		parent = 0
	}
	pl := plan.Link{
		Index: l.Index, Name: l.Name, Kind: l.Kind, Master: l.Master, ParentIndex: parent, VLANID: l.VLANID,
		Up: l.Flags&iffUp != 0, Enslaved: m.links.isEnslaved(l), MAC: mac, PermMAC: perm,
		VLANFiltering: l.VLANFiltering, DefaultPVID: l.DefaultPVID, BridgeVLANs: m.links.vlansOf(l.Index),
	}
	if e := m.entries.onLink(l.Index); e != nil {
		pl.Owned, pl.Identity = true, e.rec.Identity
	} else if l.Group == m.cfg.OwnerGroup {
		pl.Owned = true // ours but unrecorded (being adopted): never a port
	}
	if m.cfg.Facts != nil && !pl.Owned {
		f := m.links.factsOf(l, m.cfg.Facts)
		pl.Driver, pl.Bus = f.driver, f.bus
	}
	return pl
}

// ActionResult is what became of one action of a plan: done (Err nil) or
// refused, and why. A refused action is a value, not a log line, so that
// status and the reload dry-run can show it and a caller can decide when to
// try it again.
type ActionResult struct {
	// Action points into the plan applied (a bring-up's plan is thousands
	// of actions; a copy per result added one more plan to the bring-up's
	// peak heap); kept copies it out for status.
	Action *plan.Action
	Err    error // nil: done
	// Retry: refused because a foreign link holds the name (the identity
	// has moved to another unit and the next round creates it there), or
	// because the bridge to join is missing (the next round makes it).
	Retry bool
}

// Done reports whether the action was carried out.
func (r ActionResult) Done() bool { return r.Err == nil }

// convergeResult is what the last convergence did, for status.
type convergeResult struct {
	trigger string
	rounds  int
	results []ActionResult
	done    int   // actions done that results no longer lists (kept)
	dbErr   error // a commit that failed after the actions it recorded
}

// kept is r as status keeps it: the actions done only counted. A bring-up
// of 4000 ports is 8000 results, megabytes held for as long as nothing else
// acts, where status and the dry run need the count and the failures.
func (r convergeResult) kept() convergeResult {
	var failed []ActionResult
	for _, a := range r.results {
		if a.Done() {
			r.done++
			continue
		}
		action := *a.Action // not the whole plan's array kept alive for one action
		if action.Target != nil {
			target := *action.Target // nor the array of its creates' targets
			action.Target = &target
		}
		a.Action = &action
		failed = append(failed, a)
	}
	r.results = failed
	return r
}

// converge brings the kernel to what the profile derives from the links now
// present. New identities get units in one transaction, committed before any
// link is created; known identities reuse their reserved units with no DB
// write at all. Without a profile, ifmgr manages only what ifctl asks for.
// What it did is kept for status and returned.
//
// Link events are planned incrementally (plan.Planner: only what the changed
// links reach, and nothing at all when no link changed in what the planner
// reads, as for a carrier flap); everything else plans in full: a resync
// (startup, lost events, the periodic safety net), a reload and the retry of
// refused actions, so that a fault in what the planner remembers lasts at
// most until the next of them.
func (m *Manager) converge(why string) convergeResult {
	defer m.scheduleRetry()
	full := why != convergeEvents
	res := convergeResult{trigger: why}
	if m.profile == nil {
		m.refused.keepOnly(nil, m.log)
		m.links.takeChanged() // nothing plans them: the next profile plans in full
		m.entries.takeRelinked()
		return res
	}
	now := time.Now()
	var planned [][]plan.Action // every round's plan: keepOnly's keys
	// A round can leave work for the next: a name found taken by a foreign
	// link moves its identity to another unit. Each round either finishes or
	// holds one more unit, so a few rounds always settle.
	for round := 0; round < 4; round++ {
		pl := m.plan(why, round == 0 && full)
		if m.adoptLegacy(pl) {
			pl = m.plan(why, true) // rare (an upgrade's first start): all ports in place marked again
		}
		for _, idx := range pl.InPlace {
			if l, ok := m.links.get(idx); ok && !m.links.isEnslaved(l) {
				m.links.markEnslaved(idx, l.Master) // there by a rule: ifmgr's, across restarts too
			}
		}
		planned = append(planned, pl.Actions)
		due := m.dueActions(pl.Actions, now)
		if len(due) == 0 {
			break
		}
		res.rounds++
		results, err := m.apply(plan.Plan{Targets: pl.Targets, Actions: due}, why)
		res.results = append(res.results, results...)
		m.recordResults(results, now, why)
		if err != nil {
			res.dbErr = err
			break
		}
		if !anyRetry(results) {
			break
		}
	}
	m.refused.keepOnly(m.plannedKeys(planned), m.log)
	if res.rounds > 0 || res.dbErr != nil {
		// Status and the dry run show what the last convergence that acted
		// did: an event that needs nothing (often the echo of that very
		// work) must not wipe out its failures or its count.
		m.lastConverge = res.kept()
	}
	return res
}

// convergeEvents is the trigger of a convergence after link events, the
// only one planned incrementally.
const convergeEvents = "link events"

// plan returns the plan for the links now present. Its targets and ports
// in place: all of them when planned in full, else only those replanned
// (all that can have changed: the caller reads the targets for identity
// migrations, which only a new target can need, and marks the ports in
// place, which the others were at the last plan).
func (m *Manager) plan(why string, full bool) plan.Plan {
	changed, all := m.links.takeChanged()
	for idx := range m.entries.takeRelinked() {
		changed[idx] = true
	}
	var up plan.Update
	var told []plan.Link // checkPlans: the links the planner was told of
	scratch := full || all || !m.planner.Current(m.profile)
	if scratch {
		told = m.planLinks()
		up = m.planner.Full(m.profile, told)
	} else {
		names := make([]uint32, 0, len(changed))
		for idx := range changed {
			if idx != 0 {
				names = append(names, idx)
			}
		}
		up = m.planner.Apply(m.profile, plannerLinks{m}, names)
		if checkPlans {
			for _, idx := range names {
				if l, ok := m.links.get(idx); ok {
					told = append(told, m.planLink(l))
				} else {
					delete(m.toldPlanner, idx)
				}
			}
		}
	}
	if checkPlans {
		m.checkPlan(why, up, scratch, told)
	}
	if up.Changed > 0 {
		m.log.Debug("planned", "trigger", why, "full", up.Full, "changed", up.Changed, "replanned", up.Replanned, "links", m.links.len())
	}
	pl := up.Plan // its targets: all when planned in full, else those replanned
	pl.InPlace = up.InPlace
	return pl
}

// checkPlans: the package's tests set it, so that every incremental plan
// of every test is compared with the full plan (plan.Compute) of the same
// links, and the links the planner was told of (Manager.toldPlanner) with
// the table's.
var checkPlans bool

// checkPlan is checkPlans' check of the plan up, after the planner was
// told the links told: all of them when it planned from scratch, else the
// changed ones still present (the gone ones are already out of
// toldPlanner).
func (m *Manager) checkPlan(why string, up plan.Update, scratch bool, told []plan.Link) {
	if scratch || m.toldPlanner == nil {
		m.toldPlanner = make(map[uint32]plan.Link, len(told))
	}
	for _, l := range told {
		m.toldPlanner[l.Index] = l
	}
	if scratch {
		m.toldTargets = up.Plan.Targets
		return
	}
	var stale []uint32
	now := m.planLinks()
	for _, l := range now {
		if t, ok := m.toldPlanner[l.Index]; !ok || !t.Equal(l) {
			stale = append(stale, l.Index)
		}
	}
	if len(now) != len(m.toldPlanner) {
		stale = append(stale, 0) // a link gone that the planner was not told of
	}
	if len(stale) > 0 {
		panic(fmt.Sprintf("after %q the planner was not told of changes to links %v", why, stale))
	}
	want := plan.Compute(m.profile, now)
	if !up.Full && !samePlan(up.Plan, want, m.toldTargets) {
		panic(fmt.Sprintf("incremental plan after %q differs from the full plan:\n%v\nwant:\n%v", why, up.Plan.Actions, want.Actions))
	}
	m.toldTargets = want.Targets
}

// samePlan reports whether the plan in part a is the full plan b: the
// same actions and ports in place, its targets (those replanned) b's, and
// b's others as the last plan had them (known).
func samePlan(a, b plan.Plan, known map[string]plan.Target) bool {
	for k, t := range b.Targets {
		if at, ok := a.Targets[k]; ok && at != t || !ok && known[k] != t {
			return false
		}
	}
	for k := range a.Targets {
		if _, ok := b.Targets[k]; !ok {
			return false
		}
	}
	return slices.Equal(a.InPlace, b.InPlace) &&
		slices.EqualFunc(a.Actions, b.Actions, plan.Action.Equal)
}

// dueActions returns the planned actions to try now: all but the refused
// ones whose backoff runs and whose grounds have not changed since.
// Without refusals (the usual case) that is all of them, and no action is
// named (Action.String: a Sprintf each, 3000 of them in a 1000-port
// bring-up).
func (m *Manager) dueActions(actions []plan.Action, now time.Time) []plan.Action {
	if len(m.refused.byAction) == 0 {
		return actions
	}
	var members map[uint32]int
	due := make([]plan.Action, 0, len(actions))
	for _, a := range actions {
		if m.refused.byAction[a.String()] != nil {
			if members == nil {
				members = m.bridgePorts()
			}
			if !m.refused.due(a, m.groundsOf(a, members), now) {
				continue
			}
		}
		due = append(due, a)
	}
	return due
}

// plannedKeys names the actions of rounds, for refusals.keepOnly; nil
// (nothing to keep) when nothing is refused.
func (m *Manager) plannedKeys(rounds [][]plan.Action) map[string]bool {
	if len(m.refused.byAction) == 0 {
		return nil
	}
	keys := map[string]bool{}
	for _, actions := range rounds {
		for _, a := range actions {
			keys[a.String()] = true
		}
	}
	return keys
}

// recordResults tells the refusals what became of the actions tried. A
// name-taken create is progress (the identity moved on), not a refusal.
func (m *Manager) recordResults(results []ActionResult, now time.Time, why string) {
	var members map[uint32]int
	for _, r := range results {
		if r.Retry || (r.Done() && (len(m.refused.byAction) == 0 || m.refused.byAction[r.Action.String()] == nil)) {
			continue
		}
		if members == nil {
			members = m.bridgePorts()
		}
		m.refused.record(r, m.groundsOf(*r.Action, members), now, m.log, why)
	}
}

// scheduleRetry arms the timer for the earliest refused action's next try.
func (m *Manager) scheduleRetry() {
	next := m.refused.nextDue()
	if next.IsZero() {
		m.retry.Stop()
		return
	}
	m.retry.Reset(max(time.Until(next), 0))
}

func anyRetry(results []ActionResult) bool {
	for _, r := range results {
		if r.Retry {
			return true
		}
	}
	return false
}

// apply carries out a plan in its order (plan.Kind) and returns, per action,
// what became of it. The error is a failed commit: of the new records
// (then no create was tried) or of the deletions that name-taken creates
// queued (then the DB keeps records of links that do not exist, which the
// next startup drops).
//
// The kernel work goes in pipelined batches (Kernel.Batch), one per step
// whose changes do not depend on each other: deletes and ups; creates (a
// VLAN on a bridge of this plan in a second wave, once the bridge's ifindex
// is known); joins; the created links' aliases (and VLANs' ups) last, so
// that ports forward before ifmgr's bookkeeping is written (followUps). A port that this plan both brings up and joins
// (and makes nothing on) goes up and joins in one RTM_SETLINK.
func (m *Manager) apply(pl plan.Plan, why string) ([]ActionResult, error) {
	results := make([]ActionResult, len(pl.Actions))
	for i := range pl.Actions {
		results[i].Action = &pl.Actions[i]
	}
	// A BringUp rides with its port's join when nothing is created on the
	// port: a VLAN needs its parent up before it is made.
	joins, parents := map[uint32]bool{}, map[uint32]bool{}
	for _, a := range pl.Actions {
		switch a.Kind {
		case plan.SetMaster:
			joins[a.Link] = true
		case plan.Create:
			parents[a.Target.ParentIndex] = true
		}
	}
	upWithJoin := map[uint32]int{} // port -> its BringUp action
	var t txn
	var creates []int // indexes of the Create actions that have an entry
	var first batch
	groupGone := m.deleteGroup(pl.Actions, results, why)
	for i, a := range pl.Actions {
		switch a.Kind {
		case plan.Delete:
			if groupGone {
				continue
			}
			first.add(i, kernel.DeleteOp(a.Link))
		case plan.BringUp:
			if joins[a.Link] && !parents[a.Link] {
				upWithJoin[a.Link] = i
				continue
			}
			first.add(i, kernel.SetUpOp(a.Link, true))
		case plan.Create:
			if err := m.reserve(*a.Target, &t); err != nil {
				results[i].Err = err
				continue
			}
			creates = append(creates, i)
		}
	}
	for k, r := range first.run(m.cfg.Kernel) {
		i := first.at[k]
		if a := pl.Actions[i]; a.Kind == plan.Delete {
			results[i].Err = m.deleted(a, r.Err, why)
		} else {
			results[i].Err = m.broughtUp(a, r.Err)
		}
	}
	if len(t.puts) > 0 {
		// The table changes anyway: stamp what is present and retire the
		// reservations absent longest, in the same transaction.
		m.stampAndRetire(&t)
	}
	if err := m.commit(&t, "derive "+why); err != nil {
		for _, i := range creates {
			e := m.entries.withIdentity(pl.Actions[i].Target.Key())
			if e != nil && e.index == 0 && containsRecord(t.puts, e.rec) {
				m.unallocate(e)
			}
			results[i].Err = fmt.Errorf("%w: %w", ErrPersist, err)
		}
		// The ports that were to go up with their joins go up now: ups
		// do not wait for the DB.
		var ups batch
		for _, i := range upWithJoin {
			ups.add(i, kernel.SetUpOp(pl.Actions[i].Link, true))
		}
		for k, r := range ups.run(m.cfg.Kernel) {
			results[ups.at[k]].Err = m.broughtUp(pl.Actions[ups.at[k]], r.Err)
		}
		return results, err
	}

	// Creates, in two waves: the second holds the self VLANs of bridges
	// the first makes, on the ifindex the bridge has by then.
	var joinBatch batch
	joinsOf := map[int]joinTo{} // joinBatch index -> the join it is
	var follow followUps        // the created links' aliases (and VLANs' ups), sent after the joins
	for _, wave := range [2]bool{false, true} {
		var cs []linkToCreate
		var at []int
		for _, i := range creates {
			target := pl.Actions[i].Target
			onBridge := target.ParentIndex == 0 && target.ParentBridge != ""
			if onBridge != wave {
				continue
			}
			e := m.entries.withIdentity(target.Key())
			parent := target.ParentIndex
			if onBridge {
				b := m.entries.withIdentity(target.ParentBridge)
				if b == nil || b.index == 0 {
					results[i].Err, results[i].Retry = fmt.Errorf("create %s on %s: %w", e.name(), target.ParentBridge, errBridgeGone), true
					continue
				}
				parent = b.index
			}
			cs = append(cs, linkToCreate{e: e, parent: parent, vid: target.VID, opt: target.Options})
			at = append(at, i)
		}
		for k, c := range m.createLinks(cs, &follow, &t, why) {
			i := at[k]
			if c.err != nil {
				results[i].Err, results[i].Retry = c.err, errors.Is(c.err, ErrNameTaken)
				continue
			}
			if master := pl.Actions[i].Target.Master; master != "" {
				m.addJoin(&joinBatch, joinsOf, joinTo{action: i, index: c.link.Index, name: c.e.name(), bridge: master, upAction: -1}, results)
			}
		}
	}
	for i, a := range pl.Actions {
		if a.Kind != plan.SetMaster {
			continue
		}
		up, ok := upWithJoin[a.Link]
		if !ok {
			up = -1
		}
		delete(upWithJoin, a.Link)
		m.addJoin(&joinBatch, joinsOf, joinTo{action: i, index: a.Link, name: a.Name, bridge: a.Master, upAction: up}, results)
	}
	for k, r := range joinBatch.run(m.cfg.Kernel) {
		m.joined(joinsOf[k], joinBatch.ops[k], r.Err, pl.Actions, results)
	}

	m.finishCreates(&follow)
	for i, a := range pl.Actions {
		switch a.Kind {
		case plan.Release:
			results[i].Err = m.releasePort(a)
		case plan.SetOptions:
			results[i].Err = m.setBridgeOptions(a)
		case plan.AddVLAN, plan.DelVLAN:
			results[i].Retry, results[i].Err = m.changeMembership(a)
		}
	}
	return results, m.commit(&t, "name taken")
}

// deleteGroup deletes every link of ifmgr's owner group in one RTM_DELLINK
// (the kernel unregisters them in one batch, one RCU grace period for all)
// when the plan deletes all of them, at least two, and books each Delete
// action. It reports whether it did; if not (the plan keeps some, or the
// kernel refused: a link in the group that cannot be deleted, such as a
// NIC an admin put there), the deletes go one per link.
func (m *Manager) deleteGroup(actions []plan.Action, results []ActionResult, why string) bool {
	dels := map[uint32]bool{}
	for _, a := range actions {
		if a.Kind == plan.Delete {
			dels[a.Link] = true
		}
	}
	if len(dels) < 2 {
		return false
	}
	whole := true
	owned := 0
	m.links.each(func(l kernel.Link) {
		if l.Group == m.cfg.OwnerGroup {
			owned++
			whole = whole && dels[l.Index]
		}
	})
	if !whole || owned != len(dels) {
		return false
	}
	r := m.cfg.Kernel.Batch([]kernel.Op{kernel.DeleteGroupOp(m.cfg.OwnerGroup)})[0]
	if r.Err != nil && !errors.Is(r.Err, kernel.ErrNotFound) {
		m.log.Debug("deleting the owner group in one message failed; one per link", "err", r.Err)
		return false
	}
	for i, a := range actions {
		if a.Kind == plan.Delete {
			results[i].Err = m.deleted(a, nil, why)
		}
	}
	return true
}

// batch is a list of kernel ops with the plan action each carries out.
type batch struct {
	ops []kernel.Op
	at  []int
}

func (b *batch) add(action int, op kernel.Op) {
	b.ops = append(b.ops, op)
	b.at = append(b.at, action)
}

func (b *batch) run(k Kernel) []kernel.Result {
	if len(b.ops) == 0 {
		return nil
	}
	return k.Batch(b.ops)
}

// joinTo is one join of a plan: link index (name) into the bridge with
// identity bridge, carrying out action, and the port's BringUp action
// (upAction, -1 if none) in the same message.
type joinTo struct {
	action   int
	index    uint32
	name     string
	bridge   string
	upAction int
	master   uint32 // the bridge's ifindex when the op was made
}

// addJoin queues j in b: the join with the port's up in one RTM_SETLINK,
// or alone, or, when the bridge is missing (its join waits for the next
// round), only the up.
func (m *Manager) addJoin(b *batch, joinsOf map[int]joinTo, j joinTo, results []ActionResult) {
	br := m.entries.withIdentity(j.bridge)
	if br == nil || br.index == 0 {
		results[j.action].Err = fmt.Errorf("join %s to %s: %w", j.name, j.bridge, errBridgeGone)
		results[j.action].Retry = true
		if j.upAction >= 0 {
			joinsOf[len(b.ops)] = joinTo{action: j.upAction, index: j.index, upAction: -1}
			b.add(j.upAction, kernel.SetUpOp(j.index, true))
		}
		return
	}
	j.master = br.index
	joinsOf[len(b.ops)] = j
	if j.upAction >= 0 {
		b.add(j.action, kernel.JoinUpOp(j.index, br.index))
	} else {
		b.add(j.action, kernel.SetMasterOp(j.index, br.index))
	}
}

// joined books the answer to one op of the join batch. A join sent with
// its port's up that failed is sent again as two messages, so that each
// action gets its own answer (both are idempotent).
func (m *Manager) joined(j joinTo, op kernel.Op, err error, actions []plan.Action, results []ActionResult) {
	if op.Set == kernel.SetUp { // an up whose join waits
		results[j.action].Err = m.broughtUp(actions[j.action], err)
		return
	}
	if op.Set&kernel.SetUp != 0 {
		if err != nil && !errors.Is(err, kernel.ErrNotFound) {
			results[j.upAction].Err = m.broughtUp(actions[j.upAction], m.cfg.Kernel.SetUp(j.index, true))
			err = m.cfg.Kernel.SetMaster(j.index, j.master)
		} else {
			results[j.upAction].Err = m.broughtUp(actions[j.upAction], err)
		}
	}
	results[j.action].Err = m.joinedBridge(j.index, j.name, j.bridge, err)
	results[j.action].Retry = errors.Is(results[j.action].Err, errBridgeGone)
}

func (m *Manager) setBridgeOptions(a plan.Action) error {
	if err := m.cfg.Kernel.SetBridgeOptions(a.Link, a.Options); err != nil && !errors.Is(err, kernel.ErrNotFound) {
		return fmt.Errorf("set VLAN filtering of %s: %w: %w", a.Name, ErrKernel, err)
	}
	m.links.setOptions(a.Link, a.Options)
	m.log.Info("bridge VLAN filtering set", "bridge", a.Name, "filtering", a.Options.VLANFiltering, "default_pvid", a.Options.DefaultPVID, "why", a.Why)
	return nil
}

// errNotAPort: a membership change for a port that is not in a bridge (its
// join failed or waits): the join's own result says why, and a change of
// the port's master makes the entry due at once.
var errNotAPort = errors.New("not a bridge port")

// changeMembership adds or deletes one bridge VLAN entry and records it in
// the link table, so that the next plan does not ask for it again before the
// kernel's notification is read. Retry: the bridge of a self entry was not
// made (the next round makes it).
func (m *Manager) changeMembership(a plan.Action) (retry bool, err error) {
	index := a.Link
	if index == 0 {
		b := m.entries.withIdentity(a.Bridge)
		if b == nil || b.index == 0 {
			return true, fmt.Errorf("%s of %s: %w", a.Kind, a.Bridge, errBridgeGone)
		}
		index = b.index
	}
	if l, ok := m.links.get(index); ok && !a.Self && l.Master == 0 {
		return false, fmt.Errorf("%s %s vid %d: %w", a.Kind, a.Name, a.VLAN.VID, errNotAPort)
	}
	if a.Kind == plan.AddVLAN {
		err = m.cfg.Kernel.AddBridgeVLAN(index, a.Self, a.VLAN)
	} else {
		err = m.cfg.Kernel.DelBridgeVLAN(index, a.Self, a.VLAN.VID)
	}
	switch {
	case errors.Is(err, kernel.ErrNotFound):
		return false, nil // the link went: its event follows
	case err != nil:
		return false, fmt.Errorf("%s %s vid %d: %w: %w", a.Kind, a.Name, a.VLAN.VID, ErrKernel, err)
	}
	if a.Kind == plan.AddVLAN {
		m.links.addVLAN(index, a.VLAN)
	} else {
		m.links.delVLAN(index, a.VLAN.VID)
	}
	m.log.Info("bridge VLAN "+map[plan.Kind]string{plan.AddVLAN: "added", plan.DelVLAN: "deleted"}[a.Kind], "link", a.Name, "self", a.Self, "vid", a.VLAN.VID, "pvid", a.VLAN.PVID, "untagged", a.VLAN.Untagged, "why", a.Why)
	return false, nil
}

// deleted books the answer to the delete of a link the profile no longer
// derives. Its record stays: a reservation for when it is wanted again.
func (m *Manager) deleted(a plan.Action, err error, why string) error {
	if err != nil && !errors.Is(err, kernel.ErrNotFound) {
		return fmt.Errorf("delete %s: %w: %w", a.Name, ErrKernel, err)
	}
	m.log.Info("deleted", "name", a.Name, "why", a.Why, "trigger", why)
	if e := m.entries.onLink(a.Link); e != nil {
		m.entries.detach(e)
	}
	m.links.forget(a.Link)
	return nil
}

// broughtUp books the answer to a port's up.
func (m *Manager) broughtUp(a plan.Action, err error) error {
	if err != nil && !errors.Is(err, kernel.ErrNotFound) {
		return fmt.Errorf("set %s up: %w: %w", a.Name, ErrKernel, err)
	}
	m.links.markUp(a.Link)
	m.log.Info("brought up", "port", a.Name, "why", a.Why)
	return nil
}

func (m *Manager) releasePort(a plan.Action) error {
	if err := m.cfg.Kernel.SetMaster(a.Link, 0); err != nil && !errors.Is(err, kernel.ErrNotFound) {
		return fmt.Errorf("release %s: %w: %w", a.Name, ErrKernel, err)
	}
	m.links.setMaster(a.Link, 0)
	m.log.Info("released from bridge", "port", a.Name, "why", a.Why)
	return nil
}

// reserve makes sure a target has an entry: a known identity keeps its
// reserved unit (no DB write), a new one gets the lowest free unit and a
// record in t.
func (m *Manager) reserve(target plan.Target, t *txn) error {
	c := m.byCloner[target.Cloner]
	if c == nil {
		return fmt.Errorf("cloner %q: %w", target.Cloner, ErrUnknownKind)
	}
	if m.entries.withIdentity(target.Key()) != nil {
		return nil
	}
	u, err := m.alloc[c.Name].AllocLowest()
	if err != nil {
		return fmt.Errorf("%s for %s: %w", c.Name, target.Key(), err)
	}
	rec := persist.Record{Cloner: c.Name, Unit: u, Identity: target.Identity, VID: target.VID}
	if p, ok := m.links.get(target.ParentIndex); ok && target.VID != 0 {
		rec.ParentName = p.Name
	} else if b := m.entries.withIdentity(target.ParentBridge); b != nil {
		rec.ParentName = b.name() // a bridge this plan makes: its unit is reserved already
	}
	m.entries.add(&entry{rec: rec, cloner: c})
	t.puts = append(t.puts, rec)
	return nil
}

// errBridgeGone: the bridge to join is not there (deleted from outside,
// or its create was refused): the join waits for the next round, which
// makes the bridge, instead of counting as a refusal of its own.
var errBridgeGone = fmt.Errorf("bridge missing: %w", ErrNoSuchLink)

// joinedBridge books the answer to making link index (name) a port of the
// bridge with identity bridge.
func (m *Manager) joinedBridge(index uint32, name, bridge string, err error) error {
	b := m.entries.withIdentity(bridge)
	if b == nil || b.index == 0 {
		return fmt.Errorf("join %s to %s: %w", name, bridge, errBridgeGone)
	}
	if err != nil && !errors.Is(err, kernel.ErrNotFound) {
		// A stale ifindex (the bridge deleted from outside, its event not
		// yet read) is not a refusal: say what happened, and let the next
		// round make the bridge again.
		if _, rerr := m.cfg.Kernel.LinkByIndex(b.index); errors.Is(rerr, kernel.ErrNotFound) {
			m.log.Warn("bridge deleted from outside; making it again", "bridge", b.name(), "ifindex", b.index, "identity", bridge)
			m.links.gone(b.index)
			m.entries.detach(b)
			return fmt.Errorf("join %s to %s: %w", name, bridge, errBridgeGone)
		}
		return fmt.Errorf("join %s to %s: %w: %w", name, b.name(), ErrKernel, err)
	}
	m.links.setMaster(index, b.index)
	return nil
}

func containsRecord(recs []persist.Record, r persist.Record) bool {
	for _, x := range recs {
		if x.Key() == r.Key() {
			return true
		}
	}
	return false
}

// setProfile swaps the profile in force. The cloners are fixed for the life
// of the daemon (their allocations are keyed by them), so a profile that
// changes them is refused.
func (m *Manager) setProfile(p *board.Profile) error {
	if p != nil {
		for name, spec := range p.Cloners {
			c := m.byCloner[name]
			if c == nil || c.Template() != spec.Template || c.MaxUnit != spec.Max {
				return fmt.Errorf("%w: cloner %s %q max %d differs from the running %s; restart ifmgrd to change cloners", ErrBadProfile, name, spec.Template, spec.Max, describe(c))
			}
		}
	}
	m.profile = p
	return nil
}

func describe(c *Cloner) string {
	if c == nil {
		return "none"
	}
	return fmt.Sprintf("%q max %d", c.Template(), c.MaxUnit)
}

// DefaultMaxAbsent bounds the reservations kept for hardware that is not
// present, per cloner: years of USB dongles and random MACs must not grow
// the table or the unit space without bound.
const DefaultMaxAbsent = 256

// stampAndRetire runs only in a transaction that allocates anyway, so
// flaps, replugs and restarts stay free of writes. It advances the logical
// clock (not wall time: routers boot without an RTC), stamps the new records
// and every present derived record with it, and then retires the absent
// reservations with the oldest stamps beyond the bound.
func (m *Manager) stampAndRetire(t *txn) {
	m.clock++
	fresh := map[persist.RecordKey]bool{}
	for i := range t.puts {
		t.puts[i].LastSeen = m.clock
		fresh[t.puts[i].Key()] = true
		if e := m.entries.withIdentity(t.puts[i].Identity.Key()); e != nil {
			m.entries.stamp(e, m.clock)
		}
	}
	absent := map[string][]*entry{}
	m.entries.each(func(e *entry) {
		if !plan.Derived(e.rec.Identity) || fresh[e.rec.Key()] {
			return
		}
		if e.index != 0 {
			if e.rec.LastSeen < m.clock {
				m.entries.stamp(e, m.clock)
				t.puts = append(t.puts, e.rec)
			}
			return
		}
		absent[e.cloner.Name] = append(absent[e.cloner.Name], e)
	})
	limit := m.cfg.MaxAbsent
	if limit <= 0 {
		limit = DefaultMaxAbsent
	}
	for _, list := range absent {
		if len(list) <= limit {
			continue
		}
		sort.Slice(list, func(i, j int) bool {
			if list[i].rec.LastSeen != list[j].rec.LastSeen {
				return list[i].rec.LastSeen < list[j].rec.LastSeen
			}
			return list[i].rec.Unit < list[j].rec.Unit
		})
		for _, e := range list[:len(list)-limit] {
			m.release(e, t)
			m.log.Info("reservation retired", "name", e.name(), "identity", e.rec.Identity.Key(), "last_seen", e.rec.LastSeen)
		}
	}
}
