// Package board reads board profiles: human-edited TOML files that say which
// kernel links of a router are ports and what each port is for (the bridge it
// joins untagged, the 802.1Q VLANs made on it and the bridges those join).
//
// The package parses, validates and matches links against port rules; it does
// no kernel I/O beyond [SysfsFacts]. ifmgr's planner takes a validated
// *Profile and the links it observes and derives the bridges and VLANs that
// must exist. The file format is described in README.md beside this file.
package board

import (
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"path"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
	"github.com/uroute/uroute/ifmgr/ifname"
)

// ErrInvalid is wrapped by every error Parse and Load return for a profile
// that is not acceptable, syntax errors included; each such error is an
// *Error, several are joined with errors.Join.
var ErrInvalid = errors.New("invalid board profile")

// Defaults for the [cloners] tables.
const (
	DefaultBridgeTemplate = "bridge%d"
	DefaultVLANTemplate   = "vlan%d"
	// MaxUnit is the largest unit a cloner may allow: ifname.MaxUnit.
	MaxUnit = ifname.MaxUnit
	// MaxNameLen is IFNAMSIZ-1, the longest kernel interface name:
	// ifname.MaxNameLen.
	MaxNameLen = ifname.MaxNameLen
)

// Cloner names: the keys of Profile.Cloners.
const (
	ClonerBridge = "bridge"
	ClonerVLAN   = "vlan"
)

// A Profile is a validated board profile.
type Profile struct {
	Board string
	// Cloners always holds both ClonerBridge and ClonerVLAN, defaults
	// filled in.
	Cloners map[string]ClonerSpec
	// Ports in file order: the first rule that matches a link wins.
	Ports   []PortRule
	Bridges []BridgeRule
	Source  string // the name given to Parse, the path given to Load
}

// ClonerSpec is how ifmgr names the interfaces of one cloner: a template
// with exactly one %d, and the largest unit.
type ClonerSpec struct {
	Template string
	Max      uint32
}

// Match says which links a port rule applies to. Each list holds path.Match
// globs, any of which may match; every non-empty list must match. MAC globs
// are lower-case. A bus glob matches the device path or any of its leading
// directories, so "pci0000:00/*" matches every device below a top-level PCI
// function.
type Match struct {
	Names, MACs, Drivers, Buses []string
}

// A PortRule says which links are ports and what they are for.
type PortRule struct {
	Name  string
	Match Match
	// Bridge is the bridge rule the port joins untagged; "" for none.
	Bridge string
	// VLANs are the 802.1Q ids created on each matching port, in file order.
	VLANs []uint16
	// VLANBridge maps some of VLANs to the bridge rule the VLAN interface
	// joins; a VLAN not in it is left standalone.
	VLANBridge map[uint16]string
	// BridgeVLAN is the port's membership in its bridge's VLANs; nil
	// unless Bridge names a rule with VLANFiltering, and then never nil.
	BridgeVLAN *Membership
	Line       int // of the [[port]] header
}

// Membership is a port's VLAN membership in a VLAN-filtering bridge (the
// bridge_vlan table): OpenWrt's `list ports 'lan1:u*' 'lan1:t'`, networkd's
// [BridgeVLAN] PVID=, VLAN=, EgressUntagged=. Tagged and Untagged are
// disjoint; PVID, if set, is a member too, untagged unless it is in Tagged.
type Membership struct {
	PVID     uint16 // 0: untagged frames arriving are dropped
	Untagged []uint16
	Tagged   []uint16
}

// A VLANEntry is one VLAN a port (or a bridge's self side) is a member of:
// what the kernel holds per entry.
type VLANEntry struct {
	VID      uint16
	PVID     bool
	Untagged bool
}

// Entries is the membership as the kernel's entries, by ascending VID.
func (m *Membership) Entries() []VLANEntry {
	if m == nil {
		return nil
	}
	byVID := map[uint16]VLANEntry{}
	for _, vid := range m.Tagged {
		byVID[vid] = VLANEntry{VID: vid}
	}
	for _, vid := range m.Untagged {
		byVID[vid] = VLANEntry{VID: vid, Untagged: true}
	}
	if m.PVID != 0 {
		e, tagged := byVID[m.PVID]
		if !tagged {
			e = VLANEntry{VID: m.PVID, Untagged: true}
		}
		e.PVID = true
		byVID[m.PVID] = e
	}
	out := make([]VLANEntry, 0, len(byVID))
	for _, e := range byVID {
		out = append(out, e)
	}
	slices.SortFunc(out, func(a, b VLANEntry) int { return int(a.VID) - int(b.VID) })
	return out
}

// VIDs is every VLAN id the membership holds, ascending.
func (m *Membership) VIDs() []uint16 {
	var out []uint16
	for _, e := range m.Entries() {
		out = append(out, e.VID)
	}
	return out
}

// A BridgeRule is a bridge that ports and VLANs join.
type BridgeRule struct {
	Name string
	// KeepEmpty keeps the bridge when its last port goes; otherwise it
	// exists only while it has a port.
	KeepEmpty bool
	// PerPort makes one bridge for each port that joins the rule (say, one
	// per hot-plugged USB adapter) instead of one shared bridge; each gets
	// its own unit, kept for that port's hardware across replugs.
	PerPort bool
	// VLANFiltering makes a VLAN-aware bridge (IFLA_BR_VLAN_FILTERING,
	// default PVID 0): each port passes only the VLANs of its rule's
	// BridgeVLAN.
	VLANFiltering bool
	// SelfVLANs are the VLANs the router itself takes part in on a
	// filtering bridge: the bridge's own side is a tagged member of each,
	// and each gets a VLAN link on top of the bridge. Ascending.
	SelfVLANs []uint16
	Line      int // of the [[bridge]] header
}

// LinkFacts is what the caller knows about a kernel link (the caller fills
// Driver and Bus from sysfs, see SysfsFacts).
type LinkFacts struct {
	Name    string
	PermMAC string // permanent MAC, colon separated hex; any case
	Driver  string
	Bus     string // device path below /sys/devices
}

// An Error is one problem in a profile, at a line of its file.
type Error struct {
	File  string
	Line  int
	Rule  string // `port "lan"`, `bridge #2`, `cloners.vlan`; "" at top level
	Field string // "vlans", "match.name", "vlan_bridge.10"; "" if none
	Msg   string
	// Err is the toml.ParseError of a syntax error, ifname.ErrBadVID of a
	// VLAN id out of range, else nil.
	Err error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	if e.Rule != "" {
		b.WriteString(e.Rule + ": ")
	}
	if e.Field != "" {
		b.WriteString(e.Field + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Unwrap makes every Error match ErrInvalid, and a syntax error its
// toml.ParseError (a bad VLAN id ifname.ErrBadVID) too.
func (e *Error) Unwrap() []error {
	if e.Err != nil {
		return []error{ErrInvalid, e.Err}
	}
	return []error{ErrInvalid}
}

// Load reads and parses the profile at path; errors name path.
func Load(path string) (*Profile, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse parses and validates a profile; name is used in error messages and
// as Profile.Source. Every problem found is reported, sorted by line.
func Parse(name string, data []byte) (*Profile, error) {
	doc := string(data)
	var tree map[string]any
	if _, err := toml.Decode(doc, &tree); err != nil {
		e := &Error{File: name, Line: 1, Msg: err.Error()}
		var pe toml.ParseError
		if errors.As(err, &pe) {
			e.Line, e.Msg, e.Err = max(pe.Position.Line, 1), "syntax error: "+pe.Message, pe
		}
		return nil, e
	}
	v := &validator{file: name, pos: locate(doc)}
	p := v.profile(tree)
	if len(v.errs) > 0 {
		return nil, v.result()
	}
	p.Source = name
	return p, nil
}

// validator walks the decoded tree against the schema, converting values
// and collecting every error with its line.
type validator struct {
	file string
	pos  positions
	errs []*Error
}

func (v *validator) errorf(path []string, rule, field, format string, args ...any) {
	v.errs = append(v.errs, &Error{File: v.file, Line: v.pos.line(path...), Rule: rule, Field: field, Msg: fmt.Sprintf(format, args...)})
}

// errorWith is errorf for a problem that has an error value of its own.
func (v *validator) errorWith(err error, path []string, rule, field, format string, args ...any) {
	v.errorf(path, rule, field, format, args...)
	v.errs[len(v.errs)-1].Err = err
}

func (v *validator) result() error {
	sort.SliceStable(v.errs, func(i, j int) bool { return v.errs[i].Line < v.errs[j].Line })
	if len(v.errs) == 1 {
		return v.errs[0]
	}
	errs := make([]error, len(v.errs))
	for i, e := range v.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// unknown reports the keys of t not in known, in a stable order; prefix is
// how the keys of t are written relative to rule ("match.", "cloners.").
func (v *validator) unknown(t map[string]any, path []string, rule, prefix string, known ...string) {
	var keys []string
	for k := range t {
		if !slices.Contains(known, k) {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		v.errorf(sub(path, k), rule, "", "unknown key %q", prefix+k)
	}
}

func sub(path []string, more ...string) []string {
	return append(append([]string(nil), path...), more...)
}

func (v *validator) profile(tree map[string]any) *Profile {
	p := &Profile{Cloners: map[string]ClonerSpec{}}
	v.unknown(tree, nil, "", "", "board", "cloners", "port", "bridge")

	if raw, ok := tree["board"]; !ok {
		v.errorf(nil, "", "board", "missing: every profile names its board")
	} else if s, ok := v.str(raw, []string{"board"}, "", "board"); ok {
		if !validRuleName(s) {
			v.errorf([]string{"board"}, "", "board", "%q must be non-empty lower-case letters, digits and '-'", s)
		}
		p.Board = s
	}

	v.cloners(tree["cloners"], p)

	bridgeTables := v.tables(tree, "bridge")
	for i, t := range bridgeTables {
		p.Bridges = append(p.Bridges, v.bridge(t, i))
	}
	seen := v.uniqueNames("bridge", len(p.Bridges), func(i int) (string, int) { return p.Bridges[i].Name, p.Bridges[i].Line })

	for i, t := range v.tables(tree, "port") {
		p.Ports = append(p.Ports, v.port(t, i, seen))
		v.portMembership(t, i, &p.Ports[i], p.Bridges)
	}
	v.uniqueNames("port", len(p.Ports), func(i int) (string, int) { return p.Ports[i].Name, p.Ports[i].Line })
	return p
}

// uniqueNames reports every rule of a kind ("bridge", "port") whose name an
// earlier rule already has, and returns the first rule of each name, by
// name. rule(i) is the name and line of the i-th of n rules.
func (v *validator) uniqueNames(kind string, n int, rule func(i int) (name string, line int)) map[string]int {
	seen := map[string]int{}
	for i := 0; i < n; i++ {
		name, _ := rule(i)
		if name == "" {
			continue
		}
		if j, dup := seen[name]; dup {
			_, first := rule(j)
			v.errorf([]string{kind, strconv.Itoa(i), "name"}, fmt.Sprintf("%s %q", kind, name), "name", "duplicate: %s rule %q is already defined at line %d", kind, name, first)
			continue
		}
		seen[name] = i
	}
	return seen
}

// tables returns tree[key] as an array of tables ([[key]] or key = [{...}]).
func (v *validator) tables(tree map[string]any, key string) []map[string]any {
	raw, ok := tree[key]
	if !ok {
		return nil
	}
	switch t := raw.(type) {
	case []map[string]any:
		return t
	case []any:
		out := make([]map[string]any, 0, len(t))
		for i, e := range t {
			m, ok := e.(map[string]any)
			if !ok {
				v.errorf([]string{key, strconv.Itoa(i)}, "", key, "element %d is %s, want a table", i+1, tomlType(e))
				continue
			}
			out = append(out, m)
		}
		return out
	}
	v.errorf([]string{key}, "", key, "is %s, want an array of tables: write [[%s]]", tomlType(raw), key)
	return nil
}

func (v *validator) cloners(raw any, p *Profile) {
	defaults := map[string]string{ClonerBridge: DefaultBridgeTemplate, ClonerVLAN: DefaultVLANTemplate}
	for name, tmpl := range defaults {
		p.Cloners[name] = ClonerSpec{Template: tmpl, Max: MaxUnit}
	}
	if raw == nil {
		return
	}
	t, ok := raw.(map[string]any)
	if !ok {
		v.errorf([]string{"cloners"}, "", "cloners", "is %s, want a table", tomlType(raw))
		return
	}
	v.unknown(t, []string{"cloners"}, "", "cloners.", ClonerBridge, ClonerVLAN)
	for _, name := range []string{ClonerBridge, ClonerVLAN} {
		craw, ok := t[name]
		if !ok {
			continue
		}
		path := []string{"cloners", name}
		rule := "cloners." + name
		ct, ok := craw.(map[string]any)
		if !ok {
			v.errorf(path, rule, "", "is %s, want a table", tomlType(craw))
			continue
		}
		v.unknown(ct, path, rule, "", "template", "max")
		spec := p.Cloners[name]
		tmplOK, maxOK := true, true
		if raw, ok := ct["template"]; ok {
			s, ok := v.str(raw, sub(path, "template"), rule, "template")
			if ok {
				if _, err := ifname.ParseTemplate(s); err != nil {
					v.errorf(sub(path, "template"), rule, "template", "%q: %v", s, err)
					ok = false
				}
				spec.Template = s
			}
			tmplOK = ok
		}
		if raw, ok := ct["max"]; ok {
			n, ok := v.integer(raw, sub(path, "max"), rule, "max")
			if ok && (n < 0 || n > MaxUnit) {
				v.errorf(sub(path, "max"), rule, "max", "%d out of range 0-%d", n, MaxUnit)
				ok = false
			}
			if ok {
				spec.Max = uint32(n)
			}
			maxOK = ok
		}
		if tmplOK && maxOK {
			tmpl, _ := ifname.ParseTemplate(spec.Template) // checked above, or a default
			if err := tmpl.Fits(spec.Max); err != nil {
				field := "template"
				if _, ok := ct["template"]; !ok {
					field = "max"
				}
				v.errorf(sub(path, field), rule, field, "%v", err)
			}
		}
		p.Cloners[name] = spec
	}
	if b, vl := p.Cloners[ClonerBridge], p.Cloners[ClonerVLAN]; b.Template == vl.Template && validTemplate(b.Template) {
		v.errorf([]string{"cloners", ClonerVLAN, "template"}, "cloners."+ClonerVLAN, "template", "%q is also the bridge template: their names would collide", vl.Template)
	}
}

func validTemplate(t string) bool {
	_, err := ifname.ParseTemplate(t)
	return err == nil
}

func (v *validator) bridge(t map[string]any, i int) BridgeRule {
	var b BridgeRule
	path, rule := v.ruleHead(t, "bridge", i, &b.Name, &b.Line)
	v.unknown(t, path, rule, "", "name", "keep_empty", "per_port", "vlan_filtering", "self_vlans")
	for key, dst := range map[string]*bool{"keep_empty": &b.KeepEmpty, "per_port": &b.PerPort, "vlan_filtering": &b.VLANFiltering} {
		if raw, ok := t[key]; ok {
			if k, ok := raw.(bool); ok {
				*dst = k
			} else {
				v.errorf(sub(path, key), rule, key, "is %s, want true or false", tomlType(raw))
			}
		}
	}
	if b.KeepEmpty && b.PerPort {
		v.errorf(sub(path, "per_port"), rule, "per_port", "a per-port bridge exists only with its port: it cannot also be keep_empty")
	}
	if raw, ok := t["self_vlans"]; ok {
		b.SelfVLANs = v.vidList(raw, sub(path, "self_vlans"), rule, "self_vlans")
		slices.Sort(b.SelfVLANs)
		if !b.VLANFiltering && len(b.SelfVLANs) > 0 {
			v.errorf(sub(path, "self_vlans"), rule, "self_vlans", "the bridge's own VLANs need vlan_filtering = true")
		}
	}
	return b
}

// ruleHead reads what every rule table of a kind ("bridge", "port") starts
// with: its line and its name (into name and line), and returns its path
// and how errors call it (by name if it has a good one, else by number).
func (v *validator) ruleHead(t map[string]any, kind string, i int, name *string, line *int) (path []string, rule string) {
	path = []string{kind, strconv.Itoa(i)}
	*line = v.pos.line(path...)
	rule = fmt.Sprintf("%s #%d", kind, i+1)
	*name = v.ruleName(t, path, rule)
	if *name != "" {
		rule = fmt.Sprintf("%s %q", kind, *name)
	}
	return path, rule
}

// ruleName reads and checks the name key of a rule table, "" if bad.
func (v *validator) ruleName(t map[string]any, path []string, rule string) string {
	raw, ok := t["name"]
	if !ok {
		v.errorf(path, rule, "name", "missing: every rule has a name")
		return ""
	}
	s, ok := v.str(raw, sub(path, "name"), rule, "name")
	if !ok {
		return ""
	}
	if !validRuleName(s) {
		v.errorf(sub(path, "name"), rule, "name", "%q must be non-empty lower-case letters, digits and '-'", s)
		return ""
	}
	return s
}

func (v *validator) port(t map[string]any, i int, bridges map[string]int) PortRule {
	var pr PortRule
	path, rule := v.ruleHead(t, "port", i, &pr.Name, &pr.Line)
	v.unknown(t, path, rule, "", "name", "match", "bridge", "vlans", "vlan_bridge", "bridge_vlan")

	pr.Match = v.match(t["match"], sub(path, "match"), rule)

	if raw, ok := t["bridge"]; ok {
		if s, ok := v.str(raw, sub(path, "bridge"), rule, "bridge"); ok {
			if _, ok := bridges[s]; !ok {
				v.errorf(sub(path, "bridge"), rule, "bridge", "no bridge rule %q", s)
			}
			pr.Bridge = s
		}
	}

	if raw, ok := t["vlans"]; ok {
		pr.VLANs = v.vidList(raw, sub(path, "vlans"), rule, "vlans")
	}

	if raw, ok := t["vlan_bridge"]; ok {
		vbPath := sub(path, "vlan_bridge")
		vb, ok := raw.(map[string]any)
		if !ok {
			v.errorf(vbPath, rule, "vlan_bridge", "is %s, want a table of VLAN id = bridge rule", tomlType(raw))
		} else {
			keys := make([]string, 0, len(vb))
			for k := range vb {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				kPath := sub(vbPath, k)
				field := "vlan_bridge." + k
				id, err := strconv.ParseUint(k, 10, 16)
				if err != nil || strconv.FormatUint(id, 10) != k {
					v.errorf(kPath, rule, field, "key %q is not a VLAN id", k)
					continue
				}
				if !slices.Contains(pr.VLANs, uint16(id)) {
					v.errorf(kPath, rule, field, "VLAN %d is not in vlans", id)
				}
				s, ok := v.str(vb[k], kPath, rule, field)
				if !ok {
					continue
				}
				if _, ok := bridges[s]; !ok {
					v.errorf(kPath, rule, field, "no bridge rule %q", s)
				}
				if pr.VLANBridge == nil {
					pr.VLANBridge = map[uint16]string{}
				}
				pr.VLANBridge[uint16(id)] = s
			}
		}
	}
	return pr
}

// portMembership reads a port rule's bridge_vlan table into pr.BridgeVLAN
// and checks it against the bridge the port joins.
func (v *validator) portMembership(t map[string]any, i int, pr *PortRule, bridges []BridgeRule) {
	portPath := []string{"port", strconv.Itoa(i)}
	rule := fmt.Sprintf("port %q", pr.Name)
	if pr.Name == "" {
		rule = fmt.Sprintf("port #%d", i+1)
	}
	var filtering, known bool
	for _, b := range bridges {
		if b.Name == pr.Bridge && pr.Bridge != "" {
			filtering, known = b.VLANFiltering, true
		}
		for _, vid := range slices.Sorted(maps.Keys(pr.VLANBridge)) {
			if pr.VLANBridge[vid] == b.Name && b.VLANFiltering {
				k := strconv.Itoa(int(vid))
				v.errorf(sub(portPath, "vlan_bridge", k), rule, "vlan_bridge."+k, "bridge rule %q filters VLANs: a VLAN link would join it with no membership; give the port bridge = %q and bridge_vlan instead", b.Name, b.Name)
			}
		}
	}
	raw, given := t["bridge_vlan"]
	bvPath := sub(portPath, "bridge_vlan")
	if !given {
		if filtering {
			v.errorf(sub(portPath, "bridge"), rule, "bridge", "bridge rule %q filters VLANs: give the port's bridge_vlan (pvid, untagged, tagged), or it passes no frame", pr.Bridge)
		}
		return
	}
	switch {
	case pr.Bridge == "":
		v.errorf(bvPath, rule, "bridge_vlan", "the port joins no bridge: give bridge = a rule with vlan_filtering = true")
	case known && !filtering:
		v.errorf(bvPath, rule, "bridge_vlan", "bridge rule %q does not filter VLANs: set vlan_filtering = true there", pr.Bridge)
	}
	bt, ok := raw.(map[string]any)
	if !ok {
		v.errorf(bvPath, rule, "bridge_vlan", "is %s, want a table of pvid, untagged, tagged", tomlType(raw))
		return
	}
	v.unknown(bt, bvPath, rule, "bridge_vlan.", "pvid", "untagged", "tagged")
	if len(bt) == 0 {
		v.errorf(bvPath, rule, "bridge_vlan", "empty: give pvid, untagged or tagged")
	}
	m := &Membership{}
	if raw, ok := bt["pvid"]; ok {
		at := sub(bvPath, "pvid")
		switch n := raw.(type) {
		case int64:
			if !validVID(n) {
				v.errorWith(ifname.ErrBadVID, at, rule, "bridge_vlan.pvid", "%d out of range %d-%d", n, ifname.MinVID, ifname.MaxVID)
			} else {
				m.PVID = uint16(n)
			}
		case []any:
			v.errorf(at, rule, "bridge_vlan.pvid", "%d PVIDs given: a port classifies untagged frames into one VLAN", len(n))
		default:
			v.errorf(at, rule, "bridge_vlan.pvid", "is %s, want a VLAN id", tomlType(raw))
		}
	}
	if raw, ok := bt["untagged"]; ok {
		m.Untagged = v.vidList(raw, sub(bvPath, "untagged"), rule, "bridge_vlan.untagged")
	}
	if raw, ok := bt["tagged"]; ok {
		tPath := sub(bvPath, "tagged")
		m.Tagged = v.vidList(raw, tPath, rule, "bridge_vlan.tagged")
		arr, _ := raw.([]any)
		for i, e := range arr {
			if n, ok := e.(int64); ok && validVID(n) && slices.Contains(m.Untagged, uint16(n)) {
				v.errorf(sub(tPath, strconv.Itoa(i)), rule, "bridge_vlan.tagged", "VLAN %d is also in untagged: a port sends a VLAN tagged or untagged, not both", n)
			}
		}
	}
	for _, vid := range m.VIDs() {
		if slices.Contains(pr.VLANs, vid) {
			v.errorf(bvPath, rule, "bridge_vlan", "VLAN %d is also in vlans: the port's own VLAN %d link would take its frames before the bridge sees them", vid, vid)
		}
	}
	pr.BridgeVLAN = m
}

// vidList reads an array of distinct VLAN ids; field names it in errors.
func (v *validator) vidList(raw any, path []string, rule, field string) []uint16 {
	arr, ok := raw.([]any)
	if !ok {
		v.errorf(path, rule, field, "is %s, want an array of VLAN ids", tomlType(raw))
		return nil
	}
	var out []uint16
	seen := map[int64]bool{}
	for i, e := range arr {
		ePath := sub(path, strconv.Itoa(i))
		n, ok := e.(int64)
		if !ok {
			v.errorf(ePath, rule, field, "element %d is %s, want an integer", i+1, tomlType(e))
			continue
		}
		if !validVID(n) {
			v.errorWith(ifname.ErrBadVID, ePath, rule, field, "%d out of range %d-%d", n, ifname.MinVID, ifname.MaxVID)
			continue
		}
		if seen[n] {
			v.errorf(ePath, rule, field, "%d given twice", n)
			continue
		}
		seen[n] = true
		out = append(out, uint16(n))
	}
	return out
}

var matchFields = []string{"name", "mac", "driver", "bus"}

func (v *validator) match(raw any, path []string, rule string) Match {
	var m Match
	if raw == nil {
		v.errorf(path, rule, "match", "missing: give at least one of match.name, match.mac, match.driver, match.bus")
		return m
	}
	t, ok := raw.(map[string]any)
	if !ok {
		v.errorf(path, rule, "match", "is %s, want a table", tomlType(raw))
		return m
	}
	v.unknown(t, path, rule, "match.", matchFields...)
	given := 0
	for _, f := range matchFields {
		fraw, ok := t[f]
		if !ok {
			continue
		}
		given++
		globs := v.globs(fraw, sub(path, f), rule, "match."+f)
		switch f {
		case "name":
			m.Names = globs
		case "mac":
			for i := range globs {
				globs[i] = strings.ToLower(globs[i])
			}
			m.MACs = globs
		case "driver":
			m.Drivers = globs
		case "bus":
			m.Buses = globs
		}
	}
	if given == 0 {
		v.errorf(path, rule, "match", "empty: give at least one of match.name, match.mac, match.driver, match.bus")
	}
	return m
}

// globs reads a string or an array of strings and checks each is a valid,
// non-empty path.Match pattern.
func (v *validator) globs(raw any, at []string, rule, field string) []string {
	var elems []any
	var elemPath func(int) []string
	switch t := raw.(type) {
	case string:
		elems, elemPath = []any{t}, func(int) []string { return at }
	case []any:
		elems, elemPath = t, func(i int) []string { return sub(at, strconv.Itoa(i)) }
		if len(t) == 0 {
			v.errorf(at, rule, field, "empty list matches nothing: remove the key or give a pattern")
		}
	default:
		v.errorf(at, rule, field, "is %s, want a pattern or an array of patterns", tomlType(raw))
		return nil
	}
	var out []string
	for i, e := range elems {
		s, ok := e.(string)
		if !ok {
			v.errorf(elemPath(i), rule, field, "element %d is %s, want a string", i+1, tomlType(e))
			continue
		}
		switch {
		case s == "":
			v.errorf(elemPath(i), rule, field, "empty pattern")
			continue
		case !validGlob(s):
			v.errorf(elemPath(i), rule, field, "%q: %v", s, path.ErrBadPattern)
			continue
		case field == "match.bus" && strings.HasPrefix(s, "/"):
			v.errorf(elemPath(i), rule, field, "%q: bus paths are relative to /sys/devices", s)
			continue
		}
		out = append(out, s)
	}
	return out
}

// validVID is the one VLAN id rule (ifname.ValidVID) for a TOML integer,
// which may not fit an int on a 32-bit router.
func validVID(n int64) bool {
	return n >= 0 && n <= math.MaxUint16 && ifname.ValidVID(int(n)) == nil
}

func validGlob(p string) bool {
	_, err := path.Match(p, "")
	return err == nil
}

func (v *validator) str(raw any, path []string, rule, field string) (string, bool) {
	s, ok := raw.(string)
	if !ok {
		v.errorf(path, rule, field, "is %s, want a string", tomlType(raw))
	}
	return s, ok
}

func (v *validator) integer(raw any, path []string, rule, field string) (int64, bool) {
	n, ok := raw.(int64)
	if !ok {
		v.errorf(path, rule, field, "is %s, want an integer", tomlType(raw))
	}
	return n, ok
}

// tomlType names the TOML type of a decoded value, with an article.
func tomlType(x any) string {
	switch x.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case map[string]any:
		return "a table"
	case []map[string]any:
		return "an array of tables"
	case []any:
		return "an array"
	case nil:
		return "nothing"
	}
	return "a date-time"
}

func validRuleName(s string) bool {
	if s == "" {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
