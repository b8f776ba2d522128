package ifmgr

import (
	"fmt"

	"github.com/uroute/uroute/ifmgr/ifname"
	"github.com/uroute/uroute/ifmgr/kernel"
)

// MaxNameLen is IFNAMSIZ-1; see ifname.MaxNameLen.
const MaxNameLen = ifname.MaxNameLen

// DefaultMaxUnit is the largest unit a cloner allows unless configured
// lower; see ifname.MaxUnit.
const DefaultMaxUnit = ifname.MaxUnit

// A Cloner is a kind of interface that ifmgr creates with numbered names: a
// kernel link kind, a name template with one %d, and a maximum unit.
type Cloner struct {
	Name     string      // what ifctl calls it: "bridge", "vlan"
	Kind     kernel.Kind // what the kernel makes: IFLA_INFO_KIND
	MaxUnit  uint32
	template ifname.Template
}

// NewCloner checks the template once, so every name it ever renders fits
// IFNAMSIZ and parses back to the same unit.
func NewCloner(name string, kind kernel.Kind, template string, maxUnit uint32) (*Cloner, error) {
	t, err := ifname.ParseTemplate(template)
	if err != nil {
		return nil, fmt.Errorf("cloner %q: template %q: %w", name, template, err)
	}
	if err := t.Fits(maxUnit); err != nil {
		return nil, fmt.Errorf("cloner %q: %w", name, err)
	}
	return &Cloner{Name: name, Kind: kind, MaxUnit: maxUnit, template: t}, nil
}

// Template returns the name template the cloner was made from.
func (c *Cloner) Template() string { return c.template.String() }

// IfName renders the interface name of a unit.
func (c *Cloner) IfName(unit uint32) string { return c.template.Render(unit) }

// ParseName is the exact inverse of IfName (see ifname.Template.Unit): units
// past MaxUnit (even past uint32) are reported with ok and a value above
// MaxUnit, so the caller can say "out of range" rather than "unknown".
func (c *Cloner) ParseName(name string) (unit uint64, ok bool) { return c.template.Unit(name) }

// unitOf returns the unit a name holds in this cloner's range, if any.
func (c *Cloner) unitOf(name string) (uint32, bool) {
	u, ok := c.ParseName(name)
	if !ok || u > uint64(c.MaxUnit) {
		return 0, false
	}
	return uint32(u), true
}

// ValidName reports whether the kernel would accept name, with a reason;
// see ifname.Valid.
func ValidName(name string) error { return ifname.Valid(name) }
