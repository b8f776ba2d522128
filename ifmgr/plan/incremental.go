package plan

import (
	"maps"
	"slices"
	"sort"

	"github.com/uroute/uroute/board"
)

// Planner computes the plan of one profile over links that change a few at
// a time, replanning only what the change can reach. It remembers what it
// derived from each link of its last plan and a graph of what each plan
// entry depends on, not the links: it reads them from the owner's table
// (Links), which holds them anyway. Apply takes the ifindexes of the links
// that changed in what the planner reads (the owner's link table marks
// exactly those, whatever event or action made them, and not a carrier
// flap, which plans nothing). The changed links' connected components are
// planned again, the rest of the last plan stands.
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
// What it remembers is kept compact, as ifmgrd's memory is mostly this at
// thousands of ports: one small record per link (its identity key, the keys
// of what it derives, its master and parent, and for a port the few facts
// its derivation reads), and the graph's edges only as each link's
// (computed from its record when needed) plus, at their far ends, the links
// whose edges end there (readers): no per-node maps, no copies of links or
// targets. A copy of every link was a quarter of ifmgrd's live heap at 2000
// ports: the links themselves are read from the owner's table (Links) when
// a part is planned again.
//
// A Planner is owned by one goroutine. The Plan it returns must not be
// changed; it is valid until the next call.
type Planner struct {
	profile *board.Profile
	valid   bool
	graphed bool                 // the readers and profileEdges are of links
	links   map[uint32]linkState // of every link of the last plan
	// keyReaders, linkReaders: for each target key and each ifindex, the
	// links with an edge to it, one entry per edge, in no order.
	keyReaders  map[string][]uint32
	linkReaders map[uint32][]uint32
	// profileEdges: the edges the profile alone makes (a keep_empty bridge
	// and its self VLANs), both ways.
	profileEdges map[string][]string
	// last: the last plan's actions and ports in place. Not its targets:
	// the owner reads those of each plan while it applies it, and a plan in
	// part returns only the targets it replanned (all the others stand as
	// they were); at 4000 ports they were a megabyte kept for nothing.
	// selfBridge is what the planner reads of them: the bridge (identity
	// key) of each of its bridges' own VLANs (Target.ParentBridge).
	last       Plan
	selfBridge map[string]string
}

// linkState is what a Planner remembers of one link: its edges, and what
// its derivation read. It is replaced, never changed: Apply keeps the old
// one to compare with. 32 bytes: a link is an owned one (key) or a port
// (port) or neither, and only ports have more to remember.
type linkState struct {
	key            string // its identity key if it is an owned derived link, else ""
	master, parent uint32 // Link.Master, Link.ParentIndex
	port           *portState
}

// portState is what a Planner remembers of a link that derives anything:
// what derivePort read of it (so that a changed port's old targets can be
// derived again when the link itself has changed in the owner's table;
// TestPortFactsDerivePort holds it to all derivePort reads besides the
// ifindex: a port is not owned), and the keys of what it derives (see
// linkEdges), distinct. The targets themselves are derived again when
// asked for (target): only a few links' are, and keeping them was a
// kilobyte per port.
type portState struct {
	name, permMAC, driver, bus, mac string
	derived                         []string
}

// link is the link of ifindex index as derivePort sees it.
func (f *portState) link(index uint32) Link {
	return Link{Index: index, Name: f.name, PermMAC: f.permMAC, Driver: f.driver, Bus: f.bus, MAC: f.mac}
}

// newLinkState is the record of link l under profile p.
func newLinkState(p *board.Profile, l Link) linkState {
	s := linkState{master: l.Master, parent: l.ParentIndex}
	if l.Owned && Derived(l.Identity) {
		s.key = l.Identity.Key()
	}
	if d, ok := derivePort(p, l); ok {
		s.port = portOf(l, d)
	}
	return s
}

// portOf is what a Planner remembers of port l, which derives d.
func portOf(l Link, d portDerivation) *portState {
	return &portState{name: l.Name, permMAC: l.PermMAC, driver: l.Driver, bus: l.Bus, mac: l.MAC, derived: derivedKeys(d)}
}

// Links is the owner's table of links, as the planner reads it: every link
// of the plan, each as Compute takes it.
type Links interface {
	// Link returns the link of ifindex index, if there is one.
	Link(index uint32) (Link, bool)
	// Each calls f with every link, in any order.
	Each(f func(Link))
}

// keyedTarget is one target a link derives, with its identity key.
type keyedTarget struct {
	key    string
	target Target
}

// derives reports whether s derives target key (nil s derives nothing).
func (s *linkState) derives(key string) bool {
	return s != nil && s.port != nil && slices.Contains(s.port.derived, key)
}

// target returns what s, the record of link index, derives under key from
// profile p, of which s's derivations are (nil s derives nothing).
func (s *linkState) target(p *board.Profile, index uint32, key string) (Target, bool) {
	if !s.derives(key) {
		return Target{}, false
	}
	_, derived := linkEdges(p, s.port.link(index))
	for _, d := range derived {
		if d.key == key {
			return d.target, true
		}
	}
	return Target{}, false
}

// eachEdge calls f with the far end of each of s's edges (see Planner).
func (s *linkState) eachEdge(f func(node)) {
	if s.key != "" {
		f(node{key: s.key})
	}
	if s.port != nil {
		for _, k := range s.port.derived {
			f(node{key: k})
		}
	}
	if s.master != 0 {
		f(node{link: s.master})
	}
	if s.parent != 0 {
		f(node{link: s.parent})
	}
}

// node is a vertex of the dependency graph: a link (by ifindex) or a target
// (by identity key).
type node struct {
	link uint32
	key  string
}

// Update is what a Planner did: the plan, and how much of it was replanned.
type Update struct {
	// Plan: the plan. Its Targets are all the profile wants when Full,
	// else those replanned (Keys): the others are as they were.
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

// Full plans from scratch over links, as Compute, and remembers what it
// derived from each (Compute derives it anyway). The graph waits for the
// first Apply that needs it: a resync plans in full, and resyncs can follow
// each other (a flood that overruns the event socket) with nothing to plan
// in part between them.
func (pr *Planner) Full(p *board.Profile, links []Link) Update {
	pr.profile, pr.valid, pr.graphed = p, true, false
	pr.keyReaders, pr.linkReaders, pr.profileEdges = nil, nil, nil
	// The last plan and records go before the new ones are made: not both
	// at once (a bring-up's plan is thousands of actions).
	pr.last, pr.links, pr.selfBridge = Plan{}, nil, nil
	pl, records := compute(p, links, true)
	pr.links = records
	pr.remember(pl, pl.Targets)
	return Update{Plan: pl, Full: true, Changed: len(links), Replanned: len(links), Keys: slices.Collect(maps.Keys(pl.Targets)), InPlace: pl.InPlace}
}

// remember makes pl the last plan, of which targets are the targets
// planned (all of them, or those replanned, whose keys' old entries the
// caller has dropped from selfBridge).
func (pr *Planner) remember(pl Plan, targets map[string]Target) {
	pr.last = Plan{Actions: pl.Actions, InPlace: pl.InPlace}
	if pr.selfBridge == nil {
		pr.selfBridge = map[string]string{}
	}
	for key, t := range targets {
		if t.ParentBridge != "" {
			pr.selfBridge[key] = t.ParentBridge
		}
	}
}

// graph builds the dependency graph of the links remembered.
func (pr *Planner) graph() {
	p := pr.profile
	pr.keyReaders = make(map[string][]uint32)
	pr.linkReaders = make(map[uint32][]uint32)
	pr.profileEdges = map[string][]string{}
	if p != nil {
		for i := range p.Bridges {
			b := &p.Bridges[i]
			if !b.KeepEmpty {
				continue
			}
			id := BridgeIdentity(b.Name)
			key := id.Key()
			for _, vid := range b.SelfVLANs {
				self := SelfVLANIdentity(id, vid).Key()
				pr.profileEdges[key] = append(pr.profileEdges[key], self)
				pr.profileEdges[self] = append(pr.profileEdges[self], key)
			}
		}
	}
	for idx, s := range pr.links {
		pr.addEdges(idx, s)
	}
	pr.graphed = true
}

// Current reports whether the planner's last plan is of profile p (then
// Apply can plan the changes since).
func (pr *Planner) Current(p *board.Profile) bool { return pr.valid && p == pr.profile }

// Apply returns the plan after the given changes to the links of the last
// plan (which must be of profile p): changed names the ifindexes of the
// links added, gone (no longer in links) or changed in anything Compute
// reads; links holds every link as it is now. The caller must name every
// change: the planner keeps no copy of a link to find one itself, and what
// the caller leaves out stands as it was last planned. Naming a link that
// did not change costs a replan of what it reaches, nothing more.
func (pr *Planner) Apply(p *board.Profile, links Links, changed []uint32) Update {
	// The changes that are changes: a link known or present, once.
	isChanged := make(map[uint32]bool, len(changed))
	current := make(map[uint32]Link, len(changed))
	var names []uint32
	for _, idx := range changed {
		if isChanged[idx] {
			continue
		}
		l, here := links.Link(idx)
		if _, known := pr.links[idx]; !known && !here {
			continue
		}
		isChanged[idx] = true
		names = append(names, idx)
		if here {
			current[idx] = l
		}
	}
	changed = names
	if len(changed) == 0 {
		return Update{Plan: Plan{Actions: pr.last.Actions, InPlace: pr.last.InPlace}}
	}
	if 2*len(changed) > len(pr.links) {
		// Most links changed (a bring-up's echoes: every port and every
		// new bridge): plan everything, as Full, without the graph, which
		// would be built and walked only to reach it all, at the bring-up's
		// peak of memory.
		all := make([]Link, 0, len(pr.links)+len(current))
		links.Each(func(l Link) { all = append(all, l) })
		up := pr.Full(p, all)
		up.Changed = len(changed)
		return up
	}
	var sub []Link // the links planned: those reached, and their context
	if !pr.graphed {
		pr.graph()
	}

	// What the changed links were and are connected to: the first hop.
	// A link's master or parent is context (the link reads it; it does not
	// read the link); a target key is context when it is stable (see
	// stable), else it is reached like everything beyond.
	type hop struct {
		from uint32
		to   node
	}
	var hops []hop
	old := make(map[uint32]*linkState, len(changed)) // the changed links' records before the change
	for _, idx := range changed {
		s, ok := pr.links[idx]
		if ok {
			old[idx] = &s
			s.eachEdge(func(n node) { hops = append(hops, hop{idx, n}) })
		}
		// Links that read this one (its ports, the VLANs on it): reached.
		for _, r := range pr.linkReaders[idx] {
			hops = append(hops, hop{0, node{link: r}})
		}
		if ok {
			pr.removeEdges(idx, s)
			delete(pr.links, idx)
		}
	}
	for _, idx := range changed {
		l, ok := current[idx]
		if !ok {
			continue
		}
		s := newLinkState(p, l)
		pr.links[idx] = s
		pr.addEdges(idx, s)
		s.eachEdge(func(n node) { hops = append(hops, hop{idx, n}) })
		for _, r := range pr.linkReaders[idx] {
			hops = append(hops, hop{0, node{link: r}})
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
			if w, ok := pr.stable(h.to.key, isChanged, old); ok {
				pr.addContext(h.to.key, w, context)
			} else {
				start = append(start, h.to)
			}
		case h.from != 0 && !isChanged[h.to.link]:
			// The changed link's master or parent: read, not reading.
			context[h.to.link] = true
			if m, ok := pr.links[h.to.link]; ok && m.key != "" {
				pr.addContext(m.key, pr.witness(m.key, isChanged), context)
			}
		default:
			start = append(start, h.to)
		}
	}
	push := func(m node) {
		if !reached[m] {
			start = append(start, m)
		}
	}
	for len(start) > 0 {
		n := start[len(start)-1]
		start = start[:len(start)-1]
		if reached[n] {
			continue
		}
		reached[n] = true
		if n.key != "" {
			for _, r := range pr.keyReaders[n.key] {
				push(node{link: r})
			}
			for _, k := range pr.profileEdges[n.key] {
				push(node{key: k})
			}
			continue
		}
		if isChanged[n.link] {
			continue // its neighbours were sorted out above
		}
		if s, ok := pr.links[n.link]; ok {
			s.eachEdge(push)
		}
		for _, r := range pr.linkReaders[n.link] {
			push(node{link: r})
		}
	}
	// The links themselves, from the owner's table: those the planner
	// knows (an ifindex that is only an edge's far end has no link).
	add := func(idx uint32) {
		if _, ok := pr.links[idx]; !ok {
			return
		}
		if l, ok := links.Link(idx); ok {
			sub = append(sub, l)
		}
	}
	for idx := range context {
		if !reached[node{link: idx}] {
			add(idx)
		}
	}
	for n := range reached {
		if n.key == "" {
			add(n.link)
		}
	}
	if 2*len(sub) > len(pr.links) {
		// Most of the links are reached: one plan of everything is cheaper
		// than one of a part and a merge.
		all := make([]Link, 0, len(pr.links))
		links.Each(func(l Link) { all = append(all, l) })
		pl := Compute(p, all)
		pr.selfBridge = nil
		pr.remember(pl, pl.Targets)
		return Update{Plan: pl, Full: true, Changed: len(changed), Replanned: len(all), Keys: slices.Collect(maps.Keys(pl.Targets)), InPlace: pl.InPlace}
	}
	part := Compute(p, sub)

	// The targets replanned; the others stand as they were.
	next := Plan{Targets: map[string]Target{}}
	var keys []string
	for key := range reached {
		if key.key != "" {
			delete(pr.selfBridge, key.key)
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
	pr.remember(next, next.Targets)
	return Update{Plan: next, Changed: len(changed), Replanned: len(sub), Keys: keys, InPlace: inPlace}
}

// witness is the highest ifindex among the unchanged links that derive
// key (0 if none): whose target stands when no changed link outranks it.
func (pr *Planner) witness(key string, changed map[uint32]bool) uint32 {
	var w uint32
	for _, r := range pr.keyReaders[key] {
		if s := pr.links[r]; s.derives(key) && !changed[r] && r > w {
			w = r
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
// link's, which is the same.) old holds the changed links' records from
// before the change.
func (pr *Planner) stable(key string, changed map[uint32]bool, old map[uint32]*linkState) (uint32, bool) {
	w := pr.witness(key, changed)
	if w == 0 {
		return 0, false
	}
	ws := pr.links[w]
	want, _ := ws.target(pr.profile, w, key)
	for idx := range changed {
		var now *linkState
		if s, ok := pr.links[idx]; ok {
			now = &s
		}
		was := old[idx]
		if (now != nil && now.key == key) || (was != nil && was.key == key) {
			return 0, false
		}
		if t, ok := was.target(pr.profile, idx, key); ok && t != want {
			return 0, false
		}
		if t, ok := now.target(pr.profile, idx, key); ok && t != want {
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
	if b := pr.selfBridge[key]; b != "" {
		keys = append(keys, b)
	}
	for _, k := range keys {
		for _, r := range pr.keyReaders[k] {
			if s, ok := pr.links[r]; ok && s.key == k {
				context[r] = true
			}
		}
	}
}

// addEdges records link idx's edges at their far ends.
func (pr *Planner) addEdges(idx uint32, s linkState) {
	s.eachEdge(func(n node) {
		if n.key != "" {
			pr.keyReaders[n.key] = append(pr.keyReaders[n.key], idx)
		} else {
			pr.linkReaders[n.link] = append(pr.linkReaders[n.link], idx)
		}
	})
}

// removeEdges takes back what addEdges(idx, s) recorded.
func (pr *Planner) removeEdges(idx uint32, s linkState) {
	s.eachEdge(func(n node) {
		if n.key != "" {
			if rs := dropOne(pr.keyReaders[n.key], idx); len(rs) > 0 {
				pr.keyReaders[n.key] = rs
			} else {
				delete(pr.keyReaders, n.key)
			}
		} else {
			if rs := dropOne(pr.linkReaders[n.link], idx); len(rs) > 0 {
				pr.linkReaders[n.link] = rs
			} else {
				delete(pr.linkReaders, n.link)
			}
		}
	})
}

// dropOne removes one idx from rs (whose order does not matter).
func dropOne(rs []uint32, idx uint32) []uint32 {
	if i := slices.Index(rs, idx); i >= 0 {
		rs[i] = rs[len(rs)-1]
		rs = rs[:len(rs)-1]
	}
	return rs
}

// linkEdges is what link l's plan entries depend on and what depends on it
// (see Planner), apart from its master and parent: its identity key if it
// is an owned derived link, and the targets it derives (with the self VLANs
// of its bridges as their bare identity), one per key, the last derivation
// of a key standing.
func linkEdges(p *board.Profile, l Link) (key string, derived []keyedTarget) {
	if l.Owned && Derived(l.Identity) {
		key = l.Identity.Key()
	}
	d, ok := derivePort(p, l)
	if !ok {
		return key, nil
	}
	put := func(k string, t Target) {
		for i := range derived {
			if derived[i].key == k {
				derived[i].target = t
				return
			}
		}
		derived = append(derived, keyedTarget{k, t})
	}
	for i, kt := range d.targets {
		put(kt.key, kt.target)
		if b := d.rules[i]; b != nil {
			for _, vid := range b.SelfVLANs {
				self := SelfVLANIdentity(kt.target.Identity, vid)
				put(self.Key(), Target{Identity: self})
			}
		}
	}
	return key, derived
}

// derivedKeys is the keys of what a port's derivation d gives, as
// linkEdges lists them: its targets' and their bridges' self VLANs', each
// once.
func derivedKeys(d portDerivation) []string {
	var keys []string
	for i, kt := range d.targets {
		if !slices.Contains(keys, kt.key) {
			keys = append(keys, kt.key)
		}
		if b := d.rules[i]; b != nil {
			for _, vid := range b.SelfVLANs {
				if k := SelfVLANIdentity(kt.target.Identity, vid).Key(); !slices.Contains(keys, k) {
					keys = append(keys, k)
				}
			}
		}
	}
	return keys
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
