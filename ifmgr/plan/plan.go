// Package plan is ifmgr's planner: a pure function from a board profile and
// the observed kernel links to the ordered actions that make the kernel match
// the profile. It does no I/O and knows nothing of units: the owner goroutine
// maps each target's identity to a unit (the same identity always gets the
// same unit) and applies the actions.
package plan

import (
	"fmt"
	"sort"
	"strings"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

// Link is one observed kernel link with the facts port matching needs.
type Link struct {
	Index       uint32
	Name        string
	Kind        kernel.Kind
	Master      uint32 // ifindex of the bridge it is a port of, 0 if none
	ParentIndex uint32 // VLAN: ifindex of its lower device (kernel.Link.IfLink)
	VLANID      uint16
	Up          bool   // administratively up (IFF_UP)
	MAC         string // current address, lower-case
	PermMAC     string // permanent address, lower-case; "" for virtual links
	Driver      string
	Bus         string
	// Owned: the link carries ifmgr's ownership marker; Identity is what
	// it serves (zero if unknown).
	Owned    bool
	Identity persist.Identity
	// Enslaved: ifmgr put this (foreign) link into its current master, a
	// derived bridge. Only such a port is ever released: a member someone
	// else put there (hostapd's wlan0, a VM's tap, a container's veth) is
	// left alone, as for any link no rule matches.
	Enslaved bool
	// A bridge's VLAN-filtering settings as the kernel reports them.
	VLANFiltering bool
	DefaultPVID   uint16
	// BridgeVLANs is the link's bridge VLAN membership as last read: a
	// port's, or a bridge's own (self) side; ascending VID, one entry each.
	BridgeVLANs []kernel.BridgeVLAN
}

// Target is one interface the profile wants to exist.
type Target struct {
	Identity persist.Identity
	// Legacy is the identity older firmware derived for the same target
	// (zero if the same): a unit reserved under it is this target's, and
	// ifmgr moves it over (see LegacyPortIdentity).
	Legacy      persist.Identity
	Cloner      string // board.ClonerBridge or board.ClonerVLAN
	ParentIndex uint32 // VLAN: ifindex of the port it sits on
	VID         uint16
	Master      string // identity key of the bridge it joins, "" for none
	// ParentBridge: a VLAN on a bridge's own side (a self VLAN of a
	// filtering bridge): the bridge's identity key. ParentIndex is its
	// ifindex if the bridge exists; if not, the applier resolves the key
	// after this plan has created the bridge.
	ParentBridge string
	// Options: a bridge's VLAN-filtering settings, made with it.
	Options kernel.BridgeOptions
}

// Key is the target's identity key.
func (t Target) Key() string { return t.Identity.Key() }

// Kind of action, in the order a plan lists them (Compute builds the list
// in this order, and ifmgr applies it in this order).
type Kind int

const (
	// Delete removes an owned link the profile no longer derives. Deletes
	// come first, so a re-created interface can take back its own name.
	Delete Kind = iota
	// BringUp sets a port administratively up when ifmgr takes it in
	// (enslaves it, makes a VLAN on it): a router's ports carry traffic,
	// and VLANs on a down port are down too. Only then: afterwards an
	// operator's down stands. Ports go up before anything is created on
	// them: a VLAN cannot be set up on a down parent (ENETDOWN), and
	// follows its parent up by itself.
	BringUp
	// Create makes a target, bridges before VLANs, and enslaves it to
	// Target.Master if set.
	Create
	// SetMaster makes an existing link a port of the bridge Master (an
	// identity key, resolved after this plan's creates).
	SetMaster
	// Release takes an existing link out of an ifmgr bridge.
	Release
	// SetOptions sets an existing bridge's VLAN-filtering settings
	// (Action.Options): filtering turned off or on behind ifmgr's back, or
	// a reload that changes vlan_filtering.
	SetOptions
	// AddVLAN adds (or changes the flags of) one bridge VLAN entry of a
	// port, or of a bridge's own side (Action.Self), after the joins that
	// make the port a port.
	AddVLAN
	// DelVLAN removes one bridge VLAN entry the profile does not give.
	DelVLAN
)

func (k Kind) String() string {
	return [...]string{"delete", "bring-up", "create", "set-master", "release", "set-filtering", "vlan-add", "vlan-del"}[k]
}

// Action is one step of a plan.
//
// Only a Create has a target, so it points to one: a bring-up's plan is
// thousands of actions, and a Target in each (232 bytes) made an action 336
// bytes, a plan of 4000 ports 2 MB, alive at the bring-up's peak.
type Action struct {
	Kind   Kind
	Target *Target // Create (nil for the others); not changed once planned
	Link   uint32  // Delete, BringUp, SetMaster, Release
	Name   string  // the link's current name, for logs and dry runs
	Master string  // SetMaster
	// AddVLAN, DelVLAN: the entry, on a port (Link) or on a bridge's own
	// side (Self; Link is the bridge's ifindex, or 0 when this plan creates
	// the bridge, and then Bridge is its identity key).
	Self   bool
	Bridge string
	VLAN   kernel.BridgeVLAN
	// SetOptions: the settings the bridge Link must have.
	Options kernel.BridgeOptions
	Why     string
}

// Equal reports whether a and b are the same step (their targets the same
// target, wherever each is).
func (a Action) Equal(b Action) bool {
	at, bt := a.Target, b.Target
	a.Target, b.Target = nil, nil
	return a == b && (at == bt || at != nil && bt != nil && *at == *bt)
}

func (a Action) String() string {
	switch a.Kind {
	case Create:
		s := fmt.Sprintf("create %s %s", a.Target.Cloner, a.Target.Key())
		if a.Target.Master != "" {
			s += " in " + a.Target.Master
		}
		return s + ": " + a.Why
	case SetMaster:
		return fmt.Sprintf("set-master %s -> %s: %s", a.Name, a.Master, a.Why)
	case SetOptions:
		on := "off"
		if a.Options.VLANFiltering {
			on = "on"
		}
		return fmt.Sprintf("set-filtering %s %s (default pvid %d): %s", a.Name, on, a.Options.DefaultPVID, a.Why)
	case AddVLAN, DelVLAN:
		s := fmt.Sprintf("%s %s", a.Kind, a.Name)
		if a.Self {
			s += " self"
		}
		s += fmt.Sprintf(" vid %d", a.VLAN.VID)
		if a.Kind == AddVLAN {
			if a.VLAN.PVID {
				s += " pvid"
			}
			if a.VLAN.Untagged {
				s += " untagged"
			} else {
				s += " tagged"
			}
		}
		return s + ": " + a.Why
	default:
		return fmt.Sprintf("%s %s: %s", a.Kind, a.Name, a.Why)
	}
}

// Plan is the planner's answer.
type Plan struct {
	Targets map[string]Target // everything the profile wants, by identity key
	Actions []Action
	// InPlace lists the ports already in the bridge the profile puts them
	// in, by ifindex: whoever put them there, they are there by a rule of
	// the profile, so ifmgr counts them as its own (Link.Enslaved) from
	// then on, across restarts too.
	InPlace []uint32
}

// BridgeIdentity is the identity of the bridge a bridge rule makes.
func BridgeIdentity(rule string) persist.Identity {
	return persist.Identity{Rule: persist.RuleBridge + rule}
}

// PortBridgeIdentity is the identity of a per-port bridge: the bridge rule
// plus the identity of the port it was made for, fitted to the alias.
func PortBridgeIdentity(rule string, port persist.Identity) persist.Identity {
	id := port
	id.Rule = persist.RuleBridge + rule
	return id.Fit()
}

// PortIdentity is what stays the same about a port across unplugs and
// replugs, reboots and reconfiguration, by what a router has:
//
//   - A permanent MAC (IFLA_PERM_ADDRESS: burnt into the NIC, or the
//     address its driver read from EEPROM, nvmem or the device tree) is the
//     port, whatever its name or slot.
//   - Without one, the current MAC is configuration, not identity: veths and
//     taps get random ones, an operator or a VPN sets them, USB tethering
//     gadgets make a new one at every plug. Such a port is its place and its
//     name: the bus path of its device (which USB socket, which switch) and
//     its kernel name (which a virtual link's creator chooses; which tells
//     apart the ports of one device, like the ports of a DSA switch, named
//     from the device tree). Its driver adds nothing the bus path does not
//     say, and would renumber the port when a kernel upgrade renames it.
//
// The MAC of a port without a permanent one can change any number of times
// without a new unit and without a DB write.
func PortIdentity(rule string, l Link) persist.Identity {
	id := persist.Identity{Rule: persist.RulePort + rule}
	if l.PermMAC != "" {
		id.PermMAC = l.PermMAC
	} else {
		id.BusPath, id.Link = l.Bus, l.Name
	}
	return id
}

// LegacyPortIdentity is the port identity of firmware before Link existed
// (schema 1's fixture and every DB written by it): the permanent MAC, else
// the bus path alone, else the current MAC; bus paths were never fitted to
// the alias. Units reserved under it are moved to today's identity
// (Target.Legacy), so that an upgrade renumbers nothing.
func LegacyPortIdentity(rule string, l Link) persist.Identity {
	id := persist.Identity{Rule: persist.RulePort + rule}
	switch {
	case l.PermMAC != "":
		id.PermMAC = l.PermMAC
	case l.Bus != "":
		id.BusPath = l.Bus
	default:
		id.PermMAC = l.MAC
	}
	return id
}

// VLANIdentity is the identity of VLAN vid on a port, fitted to the alias.
func VLANIdentity(port persist.Identity, vid uint16) persist.Identity {
	port.VID = vid
	return port.Fit()
}

// legacyOf is old if it differs from id, else the zero identity.
func legacyOf(id, old persist.Identity) persist.Identity {
	if old.Key() == id.Key() {
		return persist.Identity{}
	}
	return old
}

// SelfVLANIdentity is the identity of the VLAN link a filtering bridge has
// for one of its own (self) VLANs: the bridge's identity plus the VID.
func SelfVLANIdentity(bridge persist.Identity, vid uint16) persist.Identity {
	bridge.VID = vid
	return bridge.Fit()
}

// Derived reports whether an identity is one the planner makes, as opposed
// to an interface created by name through ifctl, which the planner never
// touches.
func Derived(id persist.Identity) bool {
	return strings.HasPrefix(id.Rule, persist.RuleBridge) || strings.HasPrefix(id.Rule, persist.RulePort)
}

// Compute derives the targets of profile p over links and the actions that
// get there. A nil profile wants nothing, but still never touches what it
// did not derive.
func Compute(p *board.Profile, links []Link) Plan {
	pl, _ := compute(p, links, false)
	return pl
}

// compute is Compute, and with remember the Planner's record of each link
// (newLinkState's), made of what Compute derives anyway.
func compute(p *board.Profile, links []Link, remember bool) (Plan, map[uint32]linkState) {
	pl := Plan{Targets: map[string]Target{}}
	var records map[uint32]linkState
	if remember {
		records = make(map[uint32]linkState, len(links))
	}
	bridgeRules := map[string]*board.BridgeRule{} // of the bridge targets, by identity key
	portVLANs := map[uint32]*board.Membership{}   // ports of filtering bridges, by ifindex
	// sorted, byIndex and present point into links: at thousands of
	// links, copies of them were most of a full plan's garbage.
	sorted := sortedLinks(links)
	byIndex := make(map[uint32]*Link, len(sorted))
	present := map[string]*Link{} // owned links by identity key
	for _, l := range sorted {
		byIndex[l.Index] = l
		s := linkState{master: l.Master, parent: l.ParentIndex}
		if l.Owned && Derived(l.Identity) {
			s.key = l.Identity.Key()
			present[s.key] = l
		}
		if remember {
			records[l.Index] = s
		}
	}

	// portMaster: the bridge (identity key) each existing port link should be in.
	portMaster := map[uint32]string{}
	if p != nil {
		for i := range p.Bridges {
			if b := &p.Bridges[i]; b.KeepEmpty {
				id := BridgeIdentity(b.Name)
				pl.Targets[id.Key()] = Target{Identity: id, Cloner: board.ClonerBridge, Options: bridgeOptions(b)}
				bridgeRules[id.Key()] = b
			}
		}
		for _, l := range sorted {
			d, ok := derivePort(p, *l)
			if !ok {
				continue
			}
			if remember {
				s := records[l.Index]
				s.port = portOf(*l, d)
				records[l.Index] = s
			}
			for i, t := range d.targets {
				pl.Targets[t.key] = t.target
				if b := d.rules[i]; b != nil {
					bridgeRules[t.key] = b
				}
			}
			if d.master != "" {
				portMaster[l.Index] = d.master
				if d.membership != nil {
					portVLANs[l.Index] = d.membership
				}
			}
		}
		// The VLAN links of the bridges' own VLANs: on each bridge the
		// profile derives, one per self VLAN of its rule.
		for key, b := range bridgeRules {
			br := pl.Targets[key]
			for _, vid := range b.SelfVLANs {
				t := Target{Identity: SelfVLANIdentity(br.Identity, vid), Cloner: board.ClonerVLAN, VID: vid, ParentBridge: key}
				if l, ok := present[key]; ok {
					t.ParentIndex = l.Index
				}
				pl.Targets[t.Key()] = t
			}
		}
	}

	// Deletes: owned, derived, and no longer wanted (or wanted differently).
	var deletes []Action
	deleted := map[uint32]bool{}
	for key, l := range present {
		t, want := pl.Targets[key]
		switch {
		case !want:
			deletes = append(deletes, Action{Kind: Delete, Link: l.Index, Name: l.Name, Why: "no longer derived from the profile"})
			delete(present, key)
		case t.Cloner == board.ClonerVLAN && (l.ParentIndex != t.ParentIndex || l.VLANID != t.VID):
			deletes = append(deletes, Action{Kind: Delete, Link: l.Index, Name: l.Name, Why: "VLAN on the wrong parent or id"})
			delete(present, key)
		}
	}
	for _, d := range deletes {
		deleted[d.Link] = true
	}
	sort.Slice(deletes, func(i, j int) bool { return byName(deletes[i], deletes[j]) })

	// Creates: bridges first, so VLANs and ports can join them.
	// Sorted by the map's keys (each target's Key): formatting keys in the
	// comparison was a tenth of a bring-up's garbage.
	var missing []string
	for key := range pl.Targets {
		if _, ok := present[key]; !ok {
			missing = append(missing, key)
		}
	}
	sort.Slice(missing, func(i, j int) bool {
		a, b := pl.Targets[missing[i]].Cloner, pl.Targets[missing[j]].Cloner
		if a != b {
			return a == board.ClonerBridge
		}
		return missing[i] < missing[j]
	})
	creates := make([]Target, len(missing)) // the creates' targets, one allocation for all
	for i, key := range missing {
		creates[i] = pl.Targets[key]
	}

	// Memberships of links that exist: ports, and owned VLANs.
	var joins []Action
	wantMaster := func(idx uint32, key string, name, why string) {
		cur := byIndex[idx].Master
		if key == "" {
			// A bridge being deleted releases its ports by itself. Only a
			// port ifmgr put there is released.
			if m, ok := byIndex[cur]; ok && cur != 0 && !deleted[cur] && m.Owned && Derived(m.Identity) && byIndex[idx].Enslaved {
				joins = append(joins, Action{Kind: Release, Link: idx, Name: name, Why: "profile no longer puts it in " + m.Name})
			}
			return
		}
		if b, ok := present[key]; ok && b.Index == cur {
			pl.InPlace = append(pl.InPlace, idx)
			return
		}
		joins = append(joins, Action{Kind: SetMaster, Link: idx, Name: name, Master: key, Why: why})
	}
	for _, l := range sorted {
		switch {
		case !l.Owned:
			// A link no rule matches (any more) leaves a derived bridge
			// if ifmgr put it there; wantMaster with no bridge releases it.
			wantMaster(l.Index, portMaster[l.Index], l.Name, "port of the profile")
		case l.Kind == kernel.KindVLAN:
			if t, ok := pl.Targets[l.Identity.Key()]; ok {
				if _, kept := present[l.Identity.Key()]; kept {
					wantMaster(l.Index, t.Master, l.Name, "VLAN of the profile")
				}
			}
		}
	}
	// A port goes up when ifmgr takes it in (joins it to a bridge, makes a
	// VLAN on it), and only then: afterwards an operator's down is
	// respected, so a port can be disabled with `ip link set lan2 down`.
	takenIn := map[uint32]bool{}
	for _, a := range joins {
		if a.Kind == SetMaster {
			takenIn[a.Link] = true
		}
	}
	for i := range creates {
		if creates[i].ParentIndex != 0 {
			takenIn[creates[i].ParentIndex] = true
		}
	}
	// One allocation of the exact size, the creates and ups made in it: a
	// bring-up's plan is thousands of actions, and growing it by appends,
	// or a list per kind copied into it, left a megabyte of garbage at the
	// bring-up's peak.
	ups := bringUps{sorted, takenIn}
	settings := bridgeSettings(pl.Targets, present, deleted)
	members := memberships(sorted, pl.Targets, bridgeRules, portMaster, portVLANs, present)
	if n := len(deletes) + ups.count() + len(creates) + len(joins) + len(settings) + len(members); n > 0 {
		pl.Actions = make([]Action, 0, n)
	}
	pl.Actions = append(pl.Actions, deletes...)
	pl.Actions = ups.appendTo(pl.Actions)
	for i := range creates {
		pl.Actions = append(pl.Actions, Action{Kind: Create, Target: &creates[i], Why: "derived from the profile and missing"})
	}
	pl.Actions = append(append(append(pl.Actions, joins...), settings...), members...)
	return pl, records
}

// bridgeOptions is what a bridge rule asks of the kernel. A filtering
// bridge has default PVID 0: a port joins no VLAN until ifmgr adds the
// entries of its rule (with the kernel's default, 1, every new port would
// first pass VLAN 1 untagged, which no rule asked for).
func bridgeOptions(b *board.BridgeRule) kernel.BridgeOptions {
	return kernel.BridgeOptions{VLANFiltering: b != nil && b.VLANFiltering}
}

// bridgeSettings lists the SetOptions actions: existing derived bridges
// whose filtering differs from their rule's (turned off behind ifmgr's back,
// or a reload that changes vlan_filtering). A non-filtering bridge's default
// PVID is the kernel's business; a filtering one's must stay 0.
func bridgeSettings(targets map[string]Target, present map[string]*Link, deleted map[uint32]bool) []Action {
	var out []Action
	for key, t := range targets {
		l, ok := present[key]
		if !ok || t.Cloner != board.ClonerBridge || deleted[l.Index] {
			continue
		}
		want := t.Options
		if l.VLANFiltering == want.VLANFiltering && (!want.VLANFiltering || l.DefaultPVID == want.DefaultPVID) {
			continue
		}
		out = append(out, Action{Kind: SetOptions, Link: l.Index, Name: l.Name, Options: want, Why: "bridge VLAN filtering differs from the profile"})
	}
	sort.Slice(out, func(i, j int) bool { return byName(out[i], out[j]) })
	return out
}

// byName orders actions by link name, then ifindex: names are unique in
// the kernel, but the link table can hold a name twice for a moment (see
// linkTable), and a plan must not depend on map order.
func byName(a, b Action) bool {
	if a.Name != b.Name {
		return a.Name < b.Name
	}
	return a.Link < b.Link
}

// memberships lists the AddVLAN and DelVLAN actions that give each port of
// a filtering bridge, and each filtering bridge's own side, exactly the
// entries of the profile: only the missing or different entries are added,
// only the extra ones deleted, so a replugged port gets exactly its entries
// back and a reload that changes one port touches only that port. A port
// that is not (yet) in its bridge has no entries: the joins of this plan
// come first, and a port leaving a bridge loses its entries in the kernel.
// Members ifmgr did not put in (hostapd's wlan0) are not its business.
// links is sorted by ifindex.
func memberships(links []*Link, targets map[string]Target, rules map[string]*board.BridgeRule, portMaster map[uint32]string, portVLANs map[uint32]*board.Membership, present map[string]*Link) []Action {
	var out []Action
	diff := func(base Action, have []kernel.BridgeVLAN, want []board.VLANEntry, why string) {
		haveBy := map[uint16]kernel.BridgeVLAN{}
		for _, v := range have {
			haveBy[v.VID] = v
		}
		for _, w := range want {
			v := kernel.BridgeVLAN{VID: w.VID, PVID: w.PVID, Untagged: w.Untagged}
			if h, ok := haveBy[w.VID]; ok && h == v {
				delete(haveBy, w.VID)
				continue
			}
			delete(haveBy, w.VID)
			a := base
			a.Kind, a.VLAN, a.Why = AddVLAN, v, why
			out = append(out, a)
		}
		for _, v := range have {
			if _, extra := haveBy[v.VID]; extra {
				a := base
				a.Kind, a.VLAN, a.Why = DelVLAN, kernel.BridgeVLAN{VID: v.VID}, "not in the profile"
				out = append(out, a)
			}
		}
	}
	for _, l := range links {
		m, ok := portVLANs[l.Index]
		if !ok || l.Owned {
			continue
		}
		var have []kernel.BridgeVLAN
		if b, ok := present[portMaster[l.Index]]; ok && b.Index == l.Master {
			have = l.BridgeVLANs
		}
		diff(Action{Link: l.Index, Name: l.Name}, have, m.Entries(), "port membership of the profile")
	}
	keys := make([]string, 0, len(rules))
	for key := range rules {
		keys = append(keys, key)
	}
	sort.Strings(keys)
	for _, key := range keys {
		rule := rules[key]
		if !rule.VLANFiltering {
			continue
		}
		var want []board.VLANEntry
		for _, vid := range rule.SelfVLANs {
			want = append(want, board.VLANEntry{VID: vid}) // tagged: the VLAN link on the bridge sends and takes it tagged
		}
		base := Action{Self: true, Name: key, Bridge: key}
		var have []kernel.BridgeVLAN
		if b, ok := present[key]; ok {
			base.Link, base.Name, have = b.Index, b.Name, b.BridgeVLANs
		}
		diff(base, have, want, "the router's own VLAN on the bridge")
	}
	return out
}

// bringUps are the BringUp actions: of the ports ifmgr takes in now
// (takenIn) that are administratively down, by ifindex (links is sorted by
// it). Counted first, made into the plan's one array after.
type bringUps struct {
	links   []*Link
	takenIn map[uint32]bool
}

func (u bringUps) down(l *Link) bool { return !l.Owned && !l.Up && u.takenIn[l.Index] }

func (u bringUps) count() int {
	n := 0
	for _, l := range u.links {
		if u.down(l) {
			n++
		}
	}
	return n
}

// appendTo appends the BringUp actions to dst.
func (u bringUps) appendTo(dst []Action) []Action {
	for _, l := range u.links {
		if u.down(l) {
			dst = append(dst, Action{Kind: BringUp, Link: l.Index, Name: l.Name, Why: "port taken in by the profile is down"})
		}
	}
	return dst
}

// portDerivation is what one port link derives from the profile.
type portDerivation struct {
	master     string            // identity key of the bridge it belongs in, "" for none
	membership *board.Membership // its VLAN membership there, if the bridge filters
	// targets in the order Compute records them: when two links derive
	// one identity (one permanent MAC on two links), the higher ifindex's
	// target stands.
	// targets, with their identity keys: derived for every link of every
	// full plan, where formatting each key again and a map of rules per
	// port were a good part of a bring-up's garbage.
	targets []keyedTarget
	rules   []*board.BridgeRule // the rule of targets[i] if it is a bridge with one, else nil
}

// derivePort is the one definition of what a link derives: nothing for
// ifmgr's own links (never ports) and for links no port rule matches.
func derivePort(p *board.Profile, l Link) (portDerivation, bool) {
	var d portDerivation
	if p == nil || l.Owned {
		return d, false
	}
	rule, ok := p.MatchPort(board.LinkFacts{Name: l.Name, PermMAC: l.PermMAC, Driver: l.Driver, Bus: l.Bus})
	if !ok {
		return d, false
	}
	pid, legacy := PortIdentity(rule.Name, l), LegacyPortIdentity(rule.Name, l)
	bridgeFor := func(name string) string {
		b, _ := p.Bridge(name)
		t := Target{Identity: BridgeIdentity(name), Cloner: board.ClonerBridge, Options: bridgeOptions(b)}
		if b != nil && b.PerPort {
			t.Identity = PortBridgeIdentity(name, pid)
			t.Legacy = legacyOf(t.Identity, persist.Identity{Rule: persist.RuleBridge + name, PermMAC: legacy.PermMAC, BusPath: legacy.BusPath})
		}
		key := t.Key()
		d.targets = append(d.targets, keyedTarget{key, t})
		d.rules = append(d.rules, b)
		return key
	}
	if rule.Bridge != "" {
		d.master = bridgeFor(rule.Bridge)
		d.membership = rule.BridgeVLAN
	}
	for _, vid := range rule.VLANs {
		t := Target{Identity: VLANIdentity(pid, vid), Cloner: board.ClonerVLAN, ParentIndex: l.Index, VID: vid}
		legacyVLAN := legacy
		legacyVLAN.VID = vid
		t.Legacy = legacyOf(t.Identity, legacyVLAN)
		if b, ok := rule.VLANBridge[vid]; ok {
			t.Master = bridgeFor(b)
		}
		d.targets = append(d.targets, keyedTarget{t.Key(), t})
		d.rules = append(d.rules, nil)
	}
	return d, true
}

// sortedLinks returns pointers to links (not copies), by ifindex.
func sortedLinks(links []Link) []*Link {
	out := make([]*Link, len(links))
	for i := range links {
		out[i] = &links[i]
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Index < out[j].Index })
	return out
}
