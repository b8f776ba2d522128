package ifmgr

import (
	"fmt"
	"strconv"
	"strings"
)

// MaxNameLen is IFNAMSIZ-1: the kernel refuses longer names, and a name the
// kernel would refuse must be refused here first, never truncated into a
// different (possibly colliding) name.
const MaxNameLen = 15

// DefaultMaxUnit matches FreeBSD's if_clone default and keeps every rendered
// name short enough for IFNAMSIZ with any template of up to 10 fixed bytes.
const DefaultMaxUnit = 32767

// A Cloner is a kind of interface that ifmgr creates with numbered names: a
// kernel link kind, a name template with one %d, and a maximum unit.
type Cloner struct {
	Name    string // what ifctl calls it: "bridge", "vlan"
	Kind    string // kernel IFLA_INFO_KIND
	MaxUnit uint32
	prefix  string
	suffix  string
}

// NewCloner checks the template once, so every name it ever renders fits
// IFNAMSIZ and parses back to the same unit.
func NewCloner(name, kind, template string, maxUnit uint32) (*Cloner, error) {
	i := strings.Index(template, "%d")
	if i < 0 || strings.Count(template, "%") != 1 {
		return nil, fmt.Errorf("cloner %q: template %q: %w: need exactly one %%d", name, template, ErrBadTemplate)
	}
	c := &Cloner{Name: name, Kind: kind, MaxUnit: maxUnit, prefix: template[:i], suffix: template[i+2:]}
	if c.prefix == "" && c.suffix == "" {
		return nil, fmt.Errorf("cloner %q: template %q: %w: a bare number is not an interface name", name, template, ErrBadTemplate)
	}
	if err := validName(c.prefix + "0" + c.suffix); err != nil {
		return nil, fmt.Errorf("cloner %q: template %q: %w", name, template, err)
	}
	if longest := c.IfName(maxUnit); len(longest) > MaxNameLen {
		return nil, fmt.Errorf("cloner %q: template %q with max unit %d renders %q: %w", name, template, maxUnit, longest, ErrNameTooLong)
	}
	return c, nil
}

// Template returns the name template the cloner was made from.
func (c *Cloner) Template() string { return c.prefix + "%d" + c.suffix }

// IfName renders the interface name of a unit.
func (c *Cloner) IfName(unit uint32) string {
	return c.prefix + strconv.FormatUint(uint64(unit), 10) + c.suffix
}

// ParseName is the exact inverse of IfName: "bridge07" or "bridge+7" are not
// names this cloner renders, so they hold no unit. Units past MaxUnit (even
// past uint32) are reported with ok and a value above MaxUnit, so the caller
// can say "out of range" rather than "unknown".
func (c *Cloner) ParseName(name string) (unit uint64, ok bool) {
	if !strings.HasPrefix(name, c.prefix) || !strings.HasSuffix(name, c.suffix) || len(name) <= len(c.prefix)+len(c.suffix) {
		return 0, false
	}
	digits := name[len(c.prefix) : len(name)-len(c.suffix)]
	if digits[0] == '0' && len(digits) > 1 {
		return 0, false
	}
	for _, r := range digits {
		if r < '0' || r > '9' {
			return 0, false
		}
	}
	u, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 1<<64 - 1, true // all digits, too many of them: out of range
	}
	return u, true
}

// unitOf returns the unit a name holds in this cloner's range, if any.
func (c *Cloner) unitOf(name string) (uint32, bool) {
	u, ok := c.ParseName(name)
	if !ok || u > uint64(c.MaxUnit) {
		return 0, false
	}
	return uint32(u), true
}

// validName applies the kernel's dev_valid_name rules, so bad names fail here
// with a clear message instead of as an EINVAL from netlink.
func validName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%q: %w", name, ErrBadName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%q is %d bytes: %w", name, len(name), ErrNameTooLong)
	}
	for _, r := range name {
		if r == '/' || r == ':' || r <= ' ' || r == 0x7f {
			return fmt.Errorf("%q contains %q: %w", name, r, ErrBadName)
		}
	}
	return nil
}

// ValidName reports whether the kernel would accept name, with a reason.
func ValidName(name string) error { return validName(name) }
