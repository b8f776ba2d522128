package board

import (
	"fmt"
	"maps"
	"path"
	"slices"
	"strings"
)

// MatchPort returns the first port rule, in file order, whose given match
// fields all match l. A field a rule gives but l leaves empty does not match;
// MACs compare case-insensitively.
func (p *Profile) MatchPort(l LinkFacts) (*PortRule, bool) {
	for i := range p.Ports {
		if p.Ports[i].Match.Matches(l) {
			return &p.Ports[i], true
		}
	}
	return nil, false
}

// Matches reports whether every non-empty list of m has a glob matching l.
// A Match with no lists matches nothing.
func (m *Match) Matches(l LinkFacts) bool {
	if len(m.Names) == 0 && len(m.MACs) == 0 && len(m.Drivers) == 0 && len(m.Buses) == 0 {
		return false
	}
	return (len(m.Names) == 0 || anyGlob(m.Names, l.Name)) &&
		(len(m.MACs) == 0 || anyGlob(m.MACs, strings.ToLower(l.PermMAC))) &&
		(len(m.Drivers) == 0 || anyGlob(m.Drivers, l.Driver)) &&
		(len(m.Buses) == 0 || busGlob(m.Buses, l.Bus))
}

func anyGlob(globs []string, s string) bool {
	if s == "" {
		return false
	}
	for _, g := range globs {
		if ok, _ := path.Match(g, s); ok {
			return true
		}
	}
	return false
}

// busGlob matches the bus path or any of its leading directories, so that a
// pattern can name a subtree of the device tree.
func busGlob(globs []string, bus string) bool {
	bus = strings.Trim(bus, "/")
	if bus == "" {
		return false
	}
	for i := 0; i <= len(bus); i++ {
		if i == len(bus) || bus[i] == '/' {
			if anyGlob(globs, bus[:i]) {
				return true
			}
		}
	}
	return false
}

// Bridge returns the bridge rule called name.
func (p *Profile) Bridge(name string) (*BridgeRule, bool) {
	for i := range p.Bridges {
		if p.Bridges[i].Name == name {
			return &p.Bridges[i], true
		}
	}
	return nil, false
}

// Port returns the port rule called name.
func (p *Profile) Port(name string) (*PortRule, bool) {
	for i := range p.Ports {
		if p.Ports[i].Name == name {
			return &p.Ports[i], true
		}
	}
	return nil, false
}

// Equal reports whether p and q describe the same board, ignoring Line and
// Source: a reloaded profile that is Equal needs no action. Port rules
// compare in order (the first match wins); bridge rules, the globs of a
// match list and the VLAN ids of a port compare as sets.
func (p *Profile) Equal(q *Profile) bool {
	if p == nil || q == nil {
		return p == q
	}
	if p.Board != q.Board || !maps.Equal(p.Cloners, q.Cloners) || len(p.Ports) != len(q.Ports) || len(p.Bridges) != len(q.Bridges) {
		return false
	}
	for i := range p.Ports {
		if !p.Ports[i].equal(&q.Ports[i]) {
			return false
		}
	}
	return maps.Equal(bridgeSet(p.Bridges), bridgeSet(q.Bridges))
}

// bridgeState is what Equal compares of a bridge rule.
type bridgeState struct {
	keepEmpty, perPort, filtering bool
	selfVLANs                     string
}

func bridgeSet(bs []BridgeRule) map[string]bridgeState {
	m := make(map[string]bridgeState, len(bs))
	for _, b := range bs {
		m[b.Name] = bridgeState{b.KeepEmpty, b.PerPort, b.VLANFiltering, fmt.Sprint(setOf(b.SelfVLANs))}
	}
	return m
}

func (r *PortRule) equal(o *PortRule) bool {
	return r.Name == o.Name && r.Bridge == o.Bridge &&
		sameSet(r.Match.Names, o.Match.Names) && sameSet(r.Match.MACs, o.Match.MACs) &&
		sameSet(r.Match.Drivers, o.Match.Drivers) && sameSet(r.Match.Buses, o.Match.Buses) &&
		sameSet(r.VLANs, o.VLANs) && maps.Equal(r.VLANBridge, o.VLANBridge) &&
		slices.Equal(r.BridgeVLAN.Entries(), o.BridgeVLAN.Entries())
}

func sameSet[T ~string | ~uint16](a, b []T) bool {
	return slices.Equal(setOf(a), setOf(b))
}

func setOf[T ~string | ~uint16](a []T) []T {
	s := slices.Clone(a)
	slices.Sort(s)
	return slices.Compact(s)
}
