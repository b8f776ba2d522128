package plan

import (
	"slices"
	"sort"

	"github.com/uroute/uroute/board"
)

// Planner computes the plan of one profile over links that change a few at
// a time, replanning only what the change can reach. It remembers the links
// of its last plan and a graph of what each plan entry depends on. Apply
// takes the links that changed (the owner's link table marks every change
// of what the planner reads, whatever event or action made it), Update
// finds them by comparing every link with the remembered one; a link equal
// to its last observation (a carrier flap) changes nothing and plans
// nothing. The changed links' connected components are planned again, the
// rest of the last plan stands.
//
// Why components: every action of Compute is about one subject (a link, or
// a target's identity key) and reads only facts of links and targets
// connected to it by these edges:
//
//   - a port and every target it derives (its bridge, its VLANs and their
//     bridges, those bridges' self VLANs): who wants the target, and with
//     what parent;
//   - an owned link and its identity key: whether the target is present,
//     and on which ifindex;
//   - a link and its master, and its parent (IFLA_LINK): a release reads
//     the master's ownership and whether it is being deleted;
//   - a keep_empty bridge and its self VLANs (from the profile alone).
//
// So the full plan restricted to a union of whole components is Compute
// over the links of those components, and the rest of the last plan stands
// as it was (its components did not change). TestIncrementalEqualsFull
// checks Update against Compute over random profiles, links and changes;
// ifmgr's tests check every incremental plan of theirs against Compute.
//
// What stays costly: a component is as large as what hangs together, so
// for a bridge shared by all ports (one "lan" bridge), a change to one
// port's state replans every port of that bridge, as the full plan would.
//
// A Planner is owned by one goroutine. The Plan it returns must not be
// changed; it is valid until the next call.
type Planner struct {
	profile *board.Profile
	valid   bool
	links   map[uint32]Link
	edges   map[uint32][]node // each link's edges (their other ends)
	adj     map[node]map[node]int
	last    Plan
}

// node is a vertex of the dependency graph: a link (by ifindex) or a target
// (by identity key).
type node struct {
	link uint32
	key  string
}

// Update is what a Planner did: the plan, and how much of it was replanned.
type Update struct {
	Plan Plan
	Full bool // planned from scratch (first plan, new profile, or most links reached)
	// Changed: links that differ from the last plan's (added, gone or
	// changed); Replanned: the links of their components, planned again.
	Changed, Replanned int
	// Keys: identity keys of the targets replanned (all, when Full).
	Keys []string
	// InPlace: the ports in place among the links replanned (all, when
	// Full); the others were in place, unchanged, at the last plan.
	InPlace []uint32
}

// Full plans from scratch over links, as Compute, and remembers them.
func (pr *Planner) Full(p *board.Profile, links []Link) Update {
	pr.profile, pr.valid = p, true
	pr.links = make(map[uint32]Link, len(links))
	pr.edges = make(map[uint32][]node, len(links))
	pr.adj = map[node]map[node]int{}
	if p != nil {
		for i := range p.Bridges {
			b := &p.Bridges[i]
			if !b.KeepEmpty {
				continue
			}
			id := BridgeIdentity(b.Name)
			for _, vid := range b.SelfVLANs {
				pr.link(node{key: id.Key()}, node{key: SelfVLANIdentity(id, vid).Key()}, 1)
			}
		}
	}
	for _, l := range links {
		pr.links[l.Index] = l
		pr.setEdges(l.Index, linkEdges(p, l))
	}
	pr.last = Compute(p, links)
	return Update{Plan: pr.last, Full: true, Changed: len(links), Replanned: len(links), Keys: slicesKeys(pr.last.Targets), InPlace: pr.last.InPlace}
}

// Update returns Compute(p, links), planning again only the components of
// the links that changed since the last plan (found by comparing every
// link with its last observation; Apply is for a caller that knows which
// changed). A new profile is planned in full.
func (pr *Planner) Update(p *board.Profile, links []Link) Update {
	if !pr.valid || p != pr.profile {
		return pr.Full(p, links)
	}
	var gone []uint32
	known := 0
	for _, l := range links {
		if _, ok := pr.links[l.Index]; ok {
			known++
		}
	}
	if known != len(pr.links) {
		here := make(map[uint32]bool, len(links))
		for _, l := range links {
			here[l.Index] = true
		}
		for idx := range pr.links {
			if !here[idx] {
				gone = append(gone, idx)
			}
		}
	}
	return pr.Apply(p, links, gone)
}

// Stale lists the ifindexes whose link in links differs from what the
// planner remembers, or that it remembers and links lacks: empty when
// every change was given to Apply (a check for tests).
func (pr *Planner) Stale(links []Link) []uint32 {
	var out []uint32
	here := make(map[uint32]bool, len(links))
	for _, l := range links {
		here[l.Index] = true
		if old, ok := pr.links[l.Index]; !ok || !old.Equal(l) {
			out = append(out, l.Index)
		}
	}
	for idx := range pr.links {
		if !here[idx] {
			out = append(out, idx)
		}
	}
	return out
}

// Current reports whether the planner's last plan is of profile p (then
// Apply can plan the changes since).
func (pr *Planner) Current(p *board.Profile) bool { return pr.valid && p == pr.profile }

// Apply returns the plan after the given changes to the links of the last
// plan (which must be of profile p): links added or observed anew (those
// equal to their last observation change nothing), and the ifindexes of
// links gone. The caller must name every change: what it leaves out keeps
// its last observation.
func (pr *Planner) Apply(p *board.Profile, links []Link, gone []uint32) Update {
	var changed []uint32
	var current []Link
	for _, l := range links {
		if old, ok := pr.links[l.Index]; !ok || !old.Equal(l) {
			changed = append(changed, l.Index)
			current = append(current, l)
		}
	}
	for _, idx := range gone {
		if _, ok := pr.links[idx]; ok {
			changed = append(changed, idx)
		}
	}
	if len(changed) == 0 {
		return Update{Plan: pr.last}
	}

	// Start from the changed links and what they were connected to, then
	// move the graph to the new links: what was reachable before through a
	// changed link's old edges is reachable now from those edges' ends.
	var start []node
	for _, idx := range changed {
		start = append(start, node{link: idx})
		start = append(start, pr.edges[idx]...)
		pr.setEdges(idx, nil)
		delete(pr.links, idx)
	}
	for _, l := range current {
		pr.links[l.Index] = l
		pr.setEdges(l.Index, linkEdges(p, l))
	}
	reached := map[node]bool{}
	for len(start) > 0 {
		n := start[len(start)-1]
		start = start[:len(start)-1]
		if reached[n] {
			continue
		}
		reached[n] = true
		for m := range pr.adj[n] {
			if !reached[m] {
				start = append(start, m)
			}
		}
	}
	var sub []Link
	for n := range reached {
		if l, ok := pr.links[n.link]; ok && n.key == "" {
			sub = append(sub, l)
		}
	}
	if 2*len(sub) > len(pr.links) {
		// Most of the links are reached: one plan of everything is cheaper
		// than one of a part and a merge.
		all := make([]Link, 0, len(pr.links))
		for _, l := range pr.links {
			all = append(all, l)
		}
		pr.last = Compute(p, all)
		return Update{Plan: pr.last, Full: true, Changed: len(changed), Replanned: len(all), Keys: slicesKeys(pr.last.Targets), InPlace: pr.last.InPlace}
	}
	part := Compute(p, sub)
	// The targets map is the last plan's, changed in place: a copy would
	// cost as much as the rest (the Plan is valid until the next call).
	next := Plan{Targets: pr.last.Targets}
	var keys []string
	for key := range reached {
		if key.key != "" {
			delete(next.Targets, key.key)
		}
	}
	for key, t := range part.Targets {
		if reached[node{key: key}] {
			next.Targets[key] = t
			keys = append(keys, key)
		}
	}
	for _, a := range pr.last.Actions {
		if !reached[a.subject()] {
			next.Actions = append(next.Actions, a)
		}
	}
	for _, a := range part.Actions {
		if reached[a.subject()] {
			next.Actions = append(next.Actions, a)
		}
	}
	sort.SliceStable(next.Actions, func(i, j int) bool { return next.Actions[i].before(next.Actions[j]) })
	for _, idx := range pr.last.InPlace {
		if !reached[node{link: idx}] {
			next.InPlace = append(next.InPlace, idx)
		}
	}
	next.InPlace = append(next.InPlace, part.InPlace...) // all in reached components
	sort.Slice(next.InPlace, func(i, j int) bool { return next.InPlace[i] < next.InPlace[j] })
	pr.last = next
	return Update{Plan: next, Changed: len(changed), Replanned: len(sub), Keys: keys, InPlace: part.InPlace}
}

// setEdges replaces link idx's edges.
func (pr *Planner) setEdges(idx uint32, edges []node) {
	self := node{link: idx}
	for _, n := range pr.edges[idx] {
		pr.link(self, n, -1)
	}
	if edges == nil {
		delete(pr.edges, idx)
		return
	}
	pr.edges[idx] = edges
	for _, n := range edges {
		pr.link(self, n, 1)
	}
}

// link adds (by 1) or removes (by -1) one undirected edge; edges are
// counted, as two links can both connect the same pair.
func (pr *Planner) link(a, b node, by int) {
	for _, e := range [2][2]node{{a, b}, {b, a}} {
		m := pr.adj[e[0]]
		if m == nil {
			m = map[node]int{}
			pr.adj[e[0]] = m
		}
		if m[e[1]] += by; m[e[1]] <= 0 {
			delete(m, e[1])
			if len(m) == 0 {
				delete(pr.adj, e[0])
			}
		}
	}
}

// linkEdges lists what link l's plan entries depend on and what depends on
// it (see Planner).
func linkEdges(p *board.Profile, l Link) []node {
	out := []node{}
	if l.Owned && Derived(l.Identity) {
		out = append(out, node{key: l.Identity.Key()})
	}
	if d, ok := derivePort(p, l); ok {
		for _, t := range d.targets {
			key := t.Key()
			out = append(out, node{key: key})
			if b := d.rules[key]; b != nil {
				for _, vid := range b.SelfVLANs {
					out = append(out, node{key: SelfVLANIdentity(t.Identity, vid).Key()})
				}
			}
		}
	}
	if l.Master != 0 {
		out = append(out, node{link: l.Master})
	}
	if l.ParentIndex != 0 {
		out = append(out, node{link: l.ParentIndex})
	}
	return out
}

// subject is what an action is about: its link, or the target it makes
// (Create, a bridge's own VLAN entry).
func (a Action) subject() node {
	switch {
	case a.Kind == Create:
		return node{key: a.Target.Key()}
	case a.Self:
		return node{key: a.Bridge}
	default:
		return node{link: a.Link}
	}
}

// phase is an action's place in Compute's order: its groups, in order.
func (a Action) phase() int {
	switch a.Kind {
	case Delete:
		return 0
	case BringUp:
		return 1
	case Create:
		return 2
	case SetMaster, Release:
		return 3
	case SetOptions:
		return 4
	default: // AddVLAN, DelVLAN: the ports' entries, then the bridges' own
		if a.Self {
			return 6
		}
		return 5
	}
}

// before orders actions of different subjects as Compute does; actions of
// one subject keep their order (a stable sort).
func (a Action) before(b Action) bool {
	if pa, pb := a.phase(), b.phase(); pa != pb {
		return pa < pb
	}
	switch a.phase() {
	case 0, 4:
		return a.Name < b.Name
	case 2:
		if a.Target.Cloner != b.Target.Cloner {
			return a.Target.Cloner == board.ClonerBridge
		}
		return a.Target.Key() < b.Target.Key()
	case 6:
		return a.Bridge < b.Bridge
	default:
		return a.Link < b.Link
	}
}

// Equal reports whether two observations of a link are the same for the
// planner.
func (l Link) Equal(o Link) bool {
	return l.Index == o.Index && l.Name == o.Name && l.Kind == o.Kind && l.Master == o.Master &&
		l.ParentIndex == o.ParentIndex && l.VLANID == o.VLANID && l.Up == o.Up && l.MAC == o.MAC &&
		l.PermMAC == o.PermMAC && l.Driver == o.Driver && l.Bus == o.Bus && l.Owned == o.Owned &&
		l.Identity == o.Identity && l.Enslaved == o.Enslaved && l.VLANFiltering == o.VLANFiltering &&
		l.DefaultPVID == o.DefaultPVID && slices.Equal(l.BridgeVLANs, o.BridgeVLANs)
}

func slicesKeys(m map[string]Target) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}
