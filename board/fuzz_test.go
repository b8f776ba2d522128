package board

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/uroute/uroute/ifmgr/ifname"
)

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("profiles/*.toml")
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte(equalA))
	f.Add([]byte(equalB))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("f.toml", data)
		if err != nil {
			if p != nil {
				t.Fatal("profile and error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error does not wrap ErrInvalid: %v", err)
			}
			lines := bytes.Count(data, []byte("\n")) + 1
			for _, e := range allErrors(t, err) {
				if e.Line < 1 || e.Line > lines || e.File != "f.toml" {
					t.Fatalf("error at %s:%d of a %d-line file: %v", e.File, e.Line, lines, e)
				}
			}
			return
		}
		checkInvariants(t, p)
		// An accepted profile, written out again, parses to an Equal one.
		out, err := encode(p)
		if err != nil {
			t.Fatalf("encode: %v", err)
		}
		q, err := Parse("again.toml", out)
		if err != nil {
			t.Fatalf("re-encoded profile rejected: %v\n%s", err, out)
		}
		if !p.Equal(q) {
			t.Fatalf("re-encoded profile not Equal:\n%+v\n%+v\n%s", p, q, out)
		}
	})
}

// checkInvariants asserts what validation promises of an accepted profile.
func checkInvariants(t *testing.T, p *Profile) {
	t.Helper()
	if !validRuleName(p.Board) {
		t.Fatalf("board %q", p.Board)
	}
	if len(p.Cloners) != 2 {
		t.Fatalf("cloners %v", p.Cloners)
	}
	for name, c := range p.Cloners {
		tmpl, err := ifname.ParseTemplate(c.Template)
		if err != nil || c.Max > MaxUnit || tmpl.Fits(c.Max) != nil {
			t.Fatalf("cloner %s %+v", name, c)
		}
	}
	bridges := map[string]bool{}
	filtering := map[string]bool{}
	for _, b := range p.Bridges {
		if !validRuleName(b.Name) || bridges[b.Name] || b.Line < 1 {
			t.Fatalf("bridge %+v", b)
		}
		if len(b.SelfVLANs) > 0 && !b.VLANFiltering {
			t.Fatalf("bridge %s: self VLANs without filtering", b.Name)
		}
		for i, id := range b.SelfVLANs {
			if id < 1 || id > 4094 || i > 0 && b.SelfVLANs[i-1] >= id {
				t.Fatalf("bridge %s self VLANs %v", b.Name, b.SelfVLANs)
			}
		}
		bridges[b.Name] = true
		filtering[b.Name] = b.VLANFiltering
	}
	ports := map[string]bool{}
	for _, r := range p.Ports {
		if !validRuleName(r.Name) || ports[r.Name] || r.Line < 1 {
			t.Fatalf("port %+v", r)
		}
		ports[r.Name] = true
		m := r.Match
		if len(m.Names)+len(m.MACs)+len(m.Drivers)+len(m.Buses) == 0 {
			t.Fatalf("port %s matches nothing", r.Name)
		}
		for _, g := range append(append(append(append([]string(nil), m.Names...), m.MACs...), m.Drivers...), m.Buses...) {
			if g == "" || !validGlob(g) {
				t.Fatalf("port %s glob %q", r.Name, g)
			}
		}
		for _, g := range m.MACs {
			if g != strings.ToLower(g) {
				t.Fatalf("port %s MAC glob %q not lower-case", r.Name, g)
			}
		}
		if r.Bridge != "" && !bridges[r.Bridge] {
			t.Fatalf("port %s bridge %q", r.Name, r.Bridge)
		}
		seen := map[uint16]bool{}
		for _, id := range r.VLANs {
			if id < 1 || id > 4094 || seen[id] {
				t.Fatalf("port %s VLANs %v", r.Name, r.VLANs)
			}
			seen[id] = true
		}
		for id, b := range r.VLANBridge {
			if !seen[id] || !bridges[b] || filtering[b] {
				t.Fatalf("port %s vlan_bridge %d=%q", r.Name, id, b)
			}
		}
		// Membership exactly on the ports of filtering bridges; an id is
		// tagged or untagged; one PVID; none is also a VLAN link's.
		if (r.BridgeVLAN != nil) != (r.Bridge != "" && filtering[r.Bridge]) {
			t.Fatalf("port %s: membership %+v in bridge %q", r.Name, r.BridgeVLAN, r.Bridge)
		}
		pvids := 0
		for _, e := range r.BridgeVLAN.Entries() {
			if e.VID < 1 || e.VID > 4094 || seen[e.VID] {
				t.Fatalf("port %s entry %+v", r.Name, e)
			}
			if e.PVID {
				pvids++
			}
		}
		if m := r.BridgeVLAN; m != nil {
			for _, id := range m.Tagged {
				if slices.Contains(m.Untagged, id) {
					t.Fatalf("port %s: %d tagged and untagged", r.Name, id)
				}
			}
			if pvids > 1 || (m.PVID != 0) != (pvids == 1) {
				t.Fatalf("port %s: PVID %d, %d entries with the flag", r.Name, m.PVID, pvids)
			}
		}
		// MatchPort must not panic on anything.
		p.MatchPort(LinkFacts{Name: r.Name, PermMAC: "00:11:22:33:44:55", Driver: "d", Bus: "a/b/c"})
	}
}

// ids is a VLAN id list as TOML integers.
func ids(vids []uint16) []any {
	out := make([]any, len(vids))
	for i, id := range vids {
		out[i] = int64(id)
	}
	return out
}

// encode writes p as TOML, through the library's encoder.
func encode(p *Profile) ([]byte, error) {
	globs := func(g []string) []any {
		out := make([]any, len(g))
		for i, s := range g {
			out[i] = s
		}
		return out
	}
	tree := map[string]any{"board": p.Board}
	cl := map[string]any{}
	for name, c := range p.Cloners {
		cl[name] = map[string]any{"template": c.Template, "max": int64(c.Max)}
	}
	tree["cloners"] = cl
	var ports []map[string]any
	for _, r := range p.Ports {
		m := map[string]any{}
		for key, g := range map[string][]string{"name": r.Match.Names, "mac": r.Match.MACs, "driver": r.Match.Drivers, "bus": r.Match.Buses} {
			if len(g) > 0 {
				m[key] = globs(g)
			}
		}
		t := map[string]any{"name": r.Name, "match": m}
		if r.Bridge != "" {
			t["bridge"] = r.Bridge
		}
		if r.VLANs != nil {
			ids := make([]any, len(r.VLANs))
			for i, id := range r.VLANs {
				ids[i] = int64(id)
			}
			t["vlans"] = ids
		}
		if len(r.VLANBridge) > 0 {
			vb := map[string]any{}
			for id, b := range r.VLANBridge {
				vb[strconv.Itoa(int(id))] = b
			}
			t["vlan_bridge"] = vb
		}
		if m := r.BridgeVLAN; m != nil {
			bv := map[string]any{}
			if m.PVID != 0 {
				bv["pvid"] = int64(m.PVID)
			}
			if len(m.Untagged) > 0 {
				bv["untagged"] = ids(m.Untagged)
			}
			if len(m.Tagged) > 0 {
				bv["tagged"] = ids(m.Tagged)
			}
			t["bridge_vlan"] = bv
		}
		ports = append(ports, t)
	}
	if ports != nil {
		tree["port"] = ports
	}
	var bridges []map[string]any
	for _, b := range p.Bridges {
		bt := map[string]any{"name": b.Name, "keep_empty": b.KeepEmpty, "per_port": b.PerPort, "vlan_filtering": b.VLANFiltering}
		if len(b.SelfVLANs) > 0 {
			bt["self_vlans"] = ids(b.SelfVLANs)
		}
		bridges = append(bridges, bt)
	}
	if bridges != nil {
		tree["bridge"] = bridges
	}
	return toml.Marshal(tree)
}

// Positions the locator finds in a document that exercises the TOML
// features it must step over.
func TestLocate(t *testing.T) {
	doc := `# [not] a header = 1
a = """
x = 1
[y]
"""
b = '''
'''
"c.d" = { e = 1, f = [
  { g = 2 },   # comment } ]
  { h = "]" },
] }
[[t.u]]
v = 1979-05-27 07:32:00Z
[[t.u]]
  w . 'x' = "\"" # }
[t.u.z]
k = 1
[[arr]]
[arr.sub]
n = 2
[[arr]]
[[arr.list]]
m = 3
`
	ps := locate(doc)
	want := map[string]int{
		"a":               2,
		"b":               6,
		"c.d":             8,
		"c.d/e":           8,
		"c.d/f/0":         9,
		"c.d/f/0/g":       9,
		"c.d/f/1/h":       10,
		"t/u/0":           12,
		"t/u/0/v":         13,
		"t/u/1":           14,
		"t/u/1/w/x":       15,
		"t/u/1/z/k":       17,
		"arr/0/sub/n":     20,
		"arr/1":           21,
		"arr/1/list/0/m":  23,
		"x":               0,
		"y":               0,
		"not":             0,
		"arr/1/list/0":    22,
		"t/u/1/z":         16,
		"arr/0/sub":       19,
		"c.d/f/1":         10,
		"c.d/f":           8,
		"t/u":             12,
		"t":               12,
		"arr":             18,
		"arr/0":           18,
		"arr/1/list":      22,
		"t/u/1/w":         15,
		"arr/0/sub/n/...": 0,
	}
	for path, line := range want {
		got, ok := ps[pathKey(strings.Split(path, "/"))]
		if line == 0 {
			if ok {
				t.Errorf("%s recorded at %d, want absent", path, got)
			}
			continue
		}
		if got != line {
			t.Errorf("%s at line %d, want %d", path, got, line)
		}
	}
	// line() falls back to the nearest ancestor, and to 1.
	if got := ps.line("t", "u", "1", "z", "nope"); got != 16 {
		t.Errorf("fallback = %d, want 16", got)
	}
	if got := ps.line("nope"); got != 1 {
		t.Errorf("fallback = %d, want 1", got)
	}
	// The document is valid TOML, and the parser agrees about the keys.
	var tree map[string]any
	if _, err := toml.Decode(doc, &tree); err != nil {
		t.Fatal(err)
	}
}
