package plan

import (
	"maps"
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
// A component can be large (a bridge shared by all ports joins them all),
// so the first hop from a changed link is narrower: what the changed link
// only reads (its master, its parent) and targets whose state the change
// cannot alter (see stable: a shared bridge that other ports still want,
// the same) are context, planned with it but not planned again, and not
// gone through. What stays costly: a change to a shared target's state
// (its first port, its last, its bridge link changed or deleted from
// outside) replans everything that hangs on it, as the full plan would;
// and finding a stable target's witness walks that target's ports.
//
// A Planner is owned by one goroutine. The Plan it returns must not be
// changed; it is valid until the next call.
type Planner struct {
	profile *board.Profile
	valid   bool
	graphed bool // edges, derived and adj are of links
	links   map[uint32]Link
	edges   map[uint32][]node // each link's edges (their other ends)
	// derived: what each port link derives, by identity key (self VLANs
	// of its bridges as their bare identity)
	derived map[uint32]map[string]Target
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

// Full plans from scratch over links, as Compute, and remembers them. The
// graph waits for the first Apply that needs it: a resync plans in full,
// and resyncs can follow each other (a flood that overruns the event
// socket) with nothing to plan in part between them.
func (pr *Planner) Full(p *board.Profile, links []Link) Update {
	pr.profile, pr.valid, pr.graphed = p, true, false
	pr.links = make(map[uint32]Link, len(links))
	for _, l := range links {
		pr.links[l.Index] = l
	}
	pr.last = Compute(p, links)
	return Update{Plan: pr.last, Full: true, Changed: len(links), Replanned: len(links), Keys: slices.Collect(maps.Keys(pr.last.Targets)), InPlace: pr.last.InPlace}
}

// graph builds the dependency graph of the links remembered.
func (pr *Planner) graph() {
	p := pr.profile
	pr.edges = make(map[uint32][]node, len(pr.links))
	pr.derived = make(map[uint32]map[string]Target, len(pr.links))
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
	for _, l := range pr.links {
		pr.setLink(p, l)
	}
	pr.graphed = true
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
	var sub []Link // the links planned: those reached, and their context
	if !pr.graphed {
		pr.graph()
	}

	// What the changed links were and are connected to: the first hop.
	// A link's master or parent is context (the link reads it; it does not
	// read the link); a target key is context when it is stable (see
	// stable), else it is reached like everything beyond.
	isChanged := make(map[uint32]bool, len(changed))
	for _, idx := range changed {
		isChanged[idx] = true
	}
	type hop struct {
		from uint32
		to   node
	}
	var hops []hop
	oldDerived := map[uint32]map[string]Target{}
	oldLinks := map[uint32]Link{}
	for _, idx := range changed {
		if l, ok := pr.links[idx]; ok {
			oldLinks[idx] = l
		}
		for _, n := range pr.edges[idx] {
			hops = append(hops, hop{idx, n})
		}
		oldDerived[idx] = pr.derived[idx]
		// Links that read this one (its ports, the VLANs on it): reached.
		own := map[node]int{}
		for _, n := range pr.edges[idx] {
			own[n]++
		}
		for n, count := range pr.adj[node{link: idx}] {
			if count > own[n] && n.key == "" {
				hops = append(hops, hop{0, n})
			}
		}
		pr.setEdges(idx, nil)
		delete(pr.derived, idx)
		delete(pr.links, idx)
	}
	for _, l := range current {
		pr.links[l.Index] = l
		pr.setLink(p, l)
		for _, n := range pr.edges[l.Index] {
			hops = append(hops, hop{l.Index, n})
		}
		own := map[node]int{}
		for _, n := range pr.edges[l.Index] {
			own[n]++
		}
		for n, count := range pr.adj[node{link: l.Index}] {
			if count > own[n] && n.key == "" {
				hops = append(hops, hop{0, n})
			}
		}
	}
	reached := map[node]bool{}
	context := map[uint32]bool{}
	var start []node
	for _, idx := range changed {
		start = append(start, node{link: idx})
	}
	for _, h := range hops {
		switch {
		case h.to.key != "":
			if w, ok := pr.stable(h.to.key, isChanged, oldLinks, oldDerived); ok {
				pr.addContext(h.to.key, w, context)
			} else {
				start = append(start, h.to)
			}
		case h.from != 0 && !isChanged[h.to.link]:
			// The changed link's master or parent: read, not reading.
			context[h.to.link] = true
			if m, ok := pr.links[h.to.link]; ok && m.Owned && Derived(m.Identity) {
				pr.addContext(m.Identity.Key(), pr.witness(m.Identity.Key(), isChanged), context)
			}
		default:
			start = append(start, h.to)
		}
	}
	for len(start) > 0 {
		n := start[len(start)-1]
		start = start[:len(start)-1]
		if reached[n] {
			continue
		}
		reached[n] = true
		if n.key == "" && isChanged[n.link] {
			continue // its neighbours were sorted out above
		}
		for m := range pr.adj[n] {
			if !reached[m] {
				start = append(start, m)
			}
		}
	}
	for idx := range context {
		if !reached[node{link: idx}] {
			if l, ok := pr.links[idx]; ok {
				sub = append(sub, l)
			}
		}
	}
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
		return Update{Plan: pr.last, Full: true, Changed: len(changed), Replanned: len(all), Keys: slices.Collect(maps.Keys(pr.last.Targets)), InPlace: pr.last.InPlace}
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
	var inPlace []uint32 // of the links replanned (not those read as context)
	for _, idx := range part.InPlace {
		if reached[node{link: idx}] {
			inPlace = append(inPlace, idx)
		}
	}
	next.InPlace = append(next.InPlace, inPlace...)
	sort.Slice(next.InPlace, func(i, j int) bool { return next.InPlace[i] < next.InPlace[j] })
	pr.last = next
	return Update{Plan: next, Changed: len(changed), Replanned: len(sub), Keys: keys, InPlace: inPlace}
}

// setLink records the edges and derivations of link l.
func (pr *Planner) setLink(p *board.Profile, l Link) {
	edges, derived := linkEdges(p, l)
	pr.setEdges(l.Index, edges)
	if derived != nil {
		pr.derived[l.Index] = derived
	}
}

// witness is the highest ifindex among the unchanged links that derive
// key (0 if none): whose target stands when no changed link outranks it.
func (pr *Planner) witness(key string, changed map[uint32]bool) uint32 {
	var w uint32
	for n := range pr.adj[node{key: key}] {
		if _, derives := pr.derived[n.link][key]; n.key == "" && derives && !changed[n.link] && n.link > w {
			w = n.link
		}
	}
	return w
}

// stable reports whether target key is the same target, as wanted, after
// the changes as before, with its witness: no changed link is (or was) its
// owned link, an unchanged link derives it (so it stays wanted), and every
// changed link that derives it, or did, derives the witness's very target.
// Then nothing about key changed, and the links that read it (the other
// ports of a shared bridge) read the same: they need no new plan. (The
// target that stands is the highest deriver's: the witness's, or a changed
// link's, which is the same.)
func (pr *Planner) stable(key string, changed map[uint32]bool, oldLinks map[uint32]Link, oldDerived map[uint32]map[string]Target) (uint32, bool) {
	w := pr.witness(key, changed)
	if w == 0 {
		return 0, false
	}
	want := pr.derived[w][key]
	owns := func(l Link, ok bool) bool { return ok && l.Owned && Derived(l.Identity) && l.Identity.Key() == key }
	for idx := range changed {
		if l, ok := pr.links[idx]; owns(l, ok) {
			return 0, false
		}
		if l, ok := oldLinks[idx]; owns(l, ok) {
			return 0, false
		}
		if t, ok := oldDerived[idx][key]; ok && t != want {
			return 0, false
		}
		if t, ok := pr.derived[idx][key]; ok && t != want {
			return 0, false
		}
	}
	return w, true
}

// addContext adds to context what a plan needs to know of target key
// without planning it: its owned links (which of them is present) and a
// link that derives it (that it is wanted, and as what).
//
// A bridge's own VLAN's target sits on the bridge's present link: the
// bridge's owned links are context too.
func (pr *Planner) addContext(key string, witness uint32, context map[uint32]bool) {
	if witness != 0 {
		context[witness] = true
	}
	keys := []string{key}
	if b := pr.last.Targets[key].ParentBridge; b != "" {
		keys = append(keys, b)
	}
	for _, k := range keys {
		for n := range pr.adj[node{key: k}] {
			if l, ok := pr.links[n.link]; ok && n.key == "" && l.Owned && Derived(l.Identity) && l.Identity.Key() == k {
				context[n.link] = true
			}
		}
	}
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
func linkEdges(p *board.Profile, l Link) ([]node, map[string]Target) {
	out := []node{}
	var derived map[string]Target
	if l.Owned && Derived(l.Identity) {
		out = append(out, node{key: l.Identity.Key()})
	}
	if d, ok := derivePort(p, l); ok {
		derived = map[string]Target{}
		for _, t := range d.targets {
			key := t.Key()
			out = append(out, node{key: key})
			derived[key] = t
			if b := d.rules[key]; b != nil {
				for _, vid := range b.SelfVLANs {
					self := SelfVLANIdentity(t.Identity, vid)
					out = append(out, node{key: self.Key()})
					derived[self.Key()] = Target{Identity: self}
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
	return out, derived
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
		return byName(a, b)
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
