// Package ifname holds the rules every layer of uroute applies to interface
// names, name templates and VLAN ids, and the error values they fail with.
// It is a leaf: board (profile validation), ifmgr (requests, cloners) and
// ifmgr/kernel (the last check before netlink) import it, so the three agree
// byte for byte and errors.Is matches across them.
package ifname

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Limits.
const (
	// MaxNameLen is IFNAMSIZ-1: the kernel refuses longer names, and a name
	// it would refuse is refused here first, never truncated into a
	// different (possibly colliding) name.
	MaxNameLen = 15
	// MaxUnit is the largest unit a cloner may allow: FreeBSD's if_clone
	// default, and short enough that any template of up to 10 fixed bytes
	// renders every unit within MaxNameLen.
	MaxUnit = 32767
	// MinVID and MaxVID bound an 802.1Q VLAN id: 0 means "priority tag
	// only" and 4095 is reserved.
	MinVID = 1
	MaxVID = 4094
)

// The error values of this package's rules. ifmgr and ifmgr/kernel
// re-export them under the same names (aliases, not copies).
var (
	ErrBadName = errors.New("not a valid interface name")
	// ErrNameTooLong wraps ErrBadName: a name too long is a bad name, and
	// callers that only care about that still match it.
	ErrNameTooLong error = tooLong{}
	ErrBadVID            = fmt.Errorf("VLAN id out of range %d-%d", MinVID, MaxVID)
	ErrBadTemplate       = errors.New("bad cloner name template")
)

type tooLong struct{}

func (tooLong) Error() string {
	return "longer than " + strconv.Itoa(MaxNameLen) + " bytes (IFNAMSIZ-1)"
}
func (tooLong) Unwrap() error { return ErrBadName }

// Valid applies the kernel's dev_valid_name (net/core/dev.c) to name:
//
//	if (*name == '\0') return false;
//	if (strnlen(name, IFNAMSIZ) == IFNAMSIZ) return false;
//	if (!strcmp(name, ".") || !strcmp(name, "..")) return false;
//	while (*name) {
//		if (*name == '/' || *name == ':' || isspace(*name)) return false;
//		name++;
//	}
//
// byte by byte, with the kernel's isspace (lib/ctype.c), which is true for
// '\t' '\n' '\v' '\f' '\r' ' ' and, Latin-1 being its table, 0xA0. A NUL
// byte is refused too: the kernel would end the name there and create a
// different one. Everything else (control bytes, DEL, any other UTF-8) the
// kernel accepts, and so does Valid.
func Valid(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("%q: %w", name, ErrBadName)
	case len(name) > MaxNameLen:
		return fmt.Errorf("%q is %d bytes: %w", name, len(name), ErrNameTooLong)
	}
	for i := 0; i < len(name); i++ {
		if refused(name[i]) {
			return fmt.Errorf("%q contains %q: %w", name, rune(name[i]), ErrBadName)
		}
	}
	return nil
}

// refused reports whether dev_valid_name refuses a byte anywhere in a name:
// '/', ':', and the kernel's isspace (_S in lib/ctype.c's table); and NUL,
// which would end the name early.
func refused(b byte) bool {
	switch b {
	case '/', ':', 0, '\t', '\n', '\v', '\f', '\r', ' ', 0xa0:
		return true
	}
	return false
}

// ValidVID checks an 802.1Q VLAN id.
func ValidVID(vid int) error {
	if vid < MinVID || vid > MaxVID {
		return fmt.Errorf("vid %d: %w", vid, ErrBadVID)
	}
	return nil
}

// A Template renders numbered interface names: a fixed prefix, the unit in
// decimal, a fixed suffix ("bridge%d", "br-%d-lan"). The zero Template is
// not usable; make one with ParseTemplate.
type Template struct {
	prefix, suffix string
}

// ParseTemplate checks a template once, so that every name it renders is a
// valid interface name (up to the length, which depends on the largest unit:
// see Fits) and parses back to the same unit.
func ParseTemplate(s string) (Template, error) {
	i := strings.Index(s, "%d")
	if i < 0 || strings.Count(s, "%") != 1 {
		return Template{}, fmt.Errorf("need exactly one %%d and no other %%: %w", ErrBadTemplate)
	}
	t := Template{prefix: s[:i], suffix: s[i+2:]}
	if t.prefix == "" && t.suffix == "" {
		return Template{}, fmt.Errorf("a bare number is not an interface name: %w", ErrBadTemplate)
	}
	// The digits are always allowed, so the fixed bytes decide (the
	// length is Fits' business: it depends on the largest unit).
	for _, fixed := range []string{t.prefix, t.suffix} {
		for i := 0; i < len(fixed); i++ {
			if refused(fixed[i]) {
				return Template{}, fmt.Errorf("%q is not allowed in an interface name: %w", rune(fixed[i]), ErrBadTemplate)
			}
		}
	}
	return t, nil
}

// String returns the template as written.
func (t Template) String() string { return t.prefix + "%d" + t.suffix }

// Render returns the name of a unit.
func (t Template) Render(unit uint32) string {
	return t.prefix + strconv.FormatUint(uint64(unit), 10) + t.suffix
}

// Fits checks that the name of every unit up to maxUnit fits MaxNameLen.
func (t Template) Fits(maxUnit uint32) error {
	if longest := t.Render(maxUnit); len(longest) > MaxNameLen {
		return fmt.Errorf("template %q with max %d renders %q, %d bytes: %w", t, maxUnit, longest, len(longest), ErrNameTooLong)
	}
	return nil
}

// Unit is the exact inverse of Render: "bridge07" or "bridge+7" are not
// names the template renders, so they hold no unit. Units past uint32 are
// reported with ok and the largest uint64, so the caller can say "out of
// range" rather than "not a name of this template".
func (t Template) Unit(name string) (unit uint64, ok bool) {
	if !strings.HasPrefix(name, t.prefix) || !strings.HasSuffix(name, t.suffix) || len(name) <= len(t.prefix)+len(t.suffix) {
		return 0, false
	}
	digits := name[len(t.prefix) : len(name)-len(t.suffix)]
	if digits[0] == '0' && len(digits) > 1 {
		return 0, false
	}
	for i := 0; i < len(digits); i++ {
		if digits[i] < '0' || digits[i] > '9' {
			return 0, false
		}
	}
	u, err := strconv.ParseUint(digits, 10, 64)
	if err != nil {
		return 1<<64 - 1, true // all digits, too many of them: out of range
	}
	return u, true
}

// Overlap reports whether some name is rendered both by t, for a unit up to
// tMax, and by o, for a unit up to oMax: two cloners with such templates
// would each take that name for a unit of their own ("br%d" and "br1%d"
// both render "br10"). It returns the first such name found, and its unit
// in each template.
//
// A common name starts with both prefixes and ends with both suffixes, so
// unless one prefix starts the other and one suffix ends the other, nothing
// collides. Otherwise the answer is exact rather than clever: every name of
// the template with the smaller range is parsed back by the other (Unit is
// the exact inverse of Render), at most MaxUnit+1 names, well under a
// millisecond, done once per configuration. Digits of the fixed parts
// running into the unit's ("b%d1" against "b1%d") are what makes a shortcut
// easy to get wrong; TestOverlapMatchesBruteForce holds this to brute force.
func Overlap(t Template, tMax uint32, o Template, oMax uint32) (name string, tUnit, oUnit uint32, ok bool) {
	if !strings.HasPrefix(t.prefix, o.prefix) && !strings.HasPrefix(o.prefix, t.prefix) ||
		!strings.HasSuffix(t.suffix, o.suffix) && !strings.HasSuffix(o.suffix, t.suffix) {
		return "", 0, 0, false
	}
	walk, walkMax, other, otherMax, swapped := t, tMax, o, oMax, false
	if oMax < tMax {
		walk, walkMax, other, otherMax, swapped = o, oMax, t, tMax, true
	}
	for u := uint64(0); u <= uint64(walkMax); u++ {
		n := walk.Render(uint32(u))
		if v, hit := other.Unit(n); hit && v <= uint64(otherMax) {
			if swapped {
				return n, uint32(v), uint32(u), true
			}
			return n, uint32(u), uint32(v), true
		}
	}
	return "", 0, 0, false
}
