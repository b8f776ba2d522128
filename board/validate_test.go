package board

import (
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// allErrors flattens what Parse returned into its *Error values.
func allErrors(t *testing.T, err error) []*Error {
	t.Helper()
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		t.Errorf("error %T %q is not an *Error", err, err)
	}
	walk(err)
	return out
}

// A valid preamble: bridges lan and guest exist. Lines 1-5.
const pre = `board = "t"
[[bridge]]
name = "lan"
[[bridge]]
name = "guest"
`

func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name string
		doc  string
		want []string // one substring per expected error, in line order
	}{
		{"vlan out of range", pre + `[[port]]
name = "lan"
match.name = "eth*"
vlans = [10, 4095]
`, []string{`t.toml:9: port "lan": vlans: 4095 out of range 1-4094`}},
		{"vlan zero on its own line", pre + `[[port]]
name = "lan"
match.name = "eth*"
vlans = [
  10,
  0,
]
`, []string{`t.toml:11: port "lan": vlans: 0 out of range 1-4094`}},
		{"vlan duplicated", pre + `[[port]]
name = "lan"
match.name = "eth*"
vlans = [10, 20, 10]
`, []string{`t.toml:9: port "lan": vlans: 10 given twice`}},
		{"vlan not an integer", pre + `[[port]]
name = "lan"
match.name = "eth*"
vlans = [10, "20"]
`, []string{`t.toml:9: port "lan": vlans: element 2 is a string, want an integer`}},
		{"vlans not an array", pre + `[[port]]
name = "lan"
match.name = "eth*"
vlans = 10
`, []string{`t.toml:9: port "lan": vlans: is an integer, want an array of VLAN ids`}},
		{"unknown top-level key", `board = "t"
colour = "red"
[[bridge]]
name = "lan"
`, []string{`t.toml:2: unknown key "colour"`}},
		{"unknown port key", pre + `[[port]]
name = "lan"
match.name = "eth*"
brige = "lan"
`, []string{`t.toml:9: port "lan": unknown key "brige"`}},
		{"unknown match key", pre + `[[port]]
name = "lan"
match = { name = "eth*", vendor = "x" }
`, []string{`t.toml:8: port "lan": unknown key "match.vendor"`}},
		{"unknown bridge key", pre + `[[bridge]]
name = "wan"
stp = true
`, []string{`t.toml:8: bridge "wan": unknown key "stp"`}},
		{"unknown cloner", `board = "t"
[cloners.bond]
template = "bond%d"
`, []string{`t.toml:2: unknown key "cloners.bond"`}},
		{"unknown cloner key", `board = "t"
[cloners.bridge]
template = "br%d"
maximum = 3
`, []string{`t.toml:4: cloners.bridge: unknown key "maximum"`}},
		{"duplicate port", pre + `[[port]]
name = "lan"
match.name = "eth*"
[[port]]
name = "lan"
match.name = "lan*"
`, []string{`t.toml:10: port "lan": name: duplicate: port rule "lan" is already defined at line 6`}},
		{"duplicate bridge", pre + `[[bridge]]
name = "lan"
`, []string{`t.toml:7: bridge "lan": name: duplicate: bridge rule "lan" is already defined at line 2`}},
		{"missing bridge", pre + `[[port]]
name = "lan"
match.name = "eth*"
bridge = "lna"
`, []string{`t.toml:9: port "lan": bridge: no bridge rule "lna"`}},
		{"vlan_bridge to missing bridge", pre + `[[port]]
name = "lan"
match.name = "eth*"
vlans = [10]
vlan_bridge = { 10 = "gust" }
`, []string{`t.toml:10: port "lan": vlan_bridge.10: no bridge rule "gust"`}},
		{"vlan_bridge key not in vlans", pre + `[[port]]
name = "lan"
match.name = "eth*"
vlans = [10]
[port.vlan_bridge]
10 = "guest"
20 = "guest"
`, []string{`t.toml:12: port "lan": vlan_bridge.20: VLAN 20 is not in vlans`}},
		{"vlan_bridge key not a number", pre + `[[port]]
name = "lan"
match.name = "eth*"
vlans = [10]
vlan_bridge = { ten = "guest" }
`, []string{`t.toml:10: port "lan": vlan_bridge.ten: key "ten" is not a VLAN id`}},
		{"bad name glob", pre + `[[port]]
name = "lan"
match.name = ["eth*", "lan[1-"]
`, []string{`t.toml:8: port "lan": match.name: "lan[1-": syntax error in pattern`}},
		{"bad mac glob on its own line", pre + `[[port]]
name = "lan"
match.mac = [
  "52:54:00:*",
  "52:54:[",
]
`, []string{`t.toml:10: port "lan": match.mac: "52:54:[": syntax error in pattern`}},
		{"empty glob list", pre + `[[port]]
name = "lan"
match.driver = []
`, []string{`t.toml:8: port "lan": match.driver: empty list matches nothing`}},
		{"absolute bus", pre + `[[port]]
name = "lan"
match.bus = "/sys/devices/pci0000:00/*"
`, []string{`t.toml:8: port "lan": match.bus: "/sys/devices/pci0000:00/*": bus paths are relative to /sys/devices`}},
		{"no match", pre + `[[port]]
name = "lan"
bridge = "lan"
`, []string{`t.toml:6: port "lan": match: missing: give at least one of`}},
		{"empty match table", pre + `[[port]]
name = "lan"
[port.match]
`, []string{`t.toml:8: port "lan": match: empty: give at least one of`}},
		{"port without name", pre + `[[port]]
match.name = "eth*"
`, []string{`t.toml:6: port #1: name: missing`}},
		{"bad rule name", pre + `[[port]]
name = "LAN 1"
match.name = "eth*"
`, []string{`t.toml:7: port #1: name: "LAN 1" must be non-empty lower-case letters, digits and '-'`}},
		{"keep_empty not bool", pre + `[[bridge]]
name = "wan"
keep_empty = "yes"
`, []string{`t.toml:8: bridge "wan": keep_empty: is a string, want true or false`}},
		{"empty board", `board = ""
`, []string{`t.toml:1: board: "" must be non-empty`}},
		{"missing board", `[[bridge]]
name = "lan"
`, []string{`t.toml:1: board: missing`}},
		{"board not a string", `board = 7
`, []string{`t.toml:1: board: is an integer, want a string`}},
		{"template without %d", `board = "t"
[cloners.bridge]
template = "br"
`, []string{`t.toml:3: cloners.bridge: template: "br": need exactly one %d`}},
		{"template with two %d", `board = "t"
[cloners.vlan]
template = "v%d.%d"
`, []string{`t.toml:3: cloners.vlan: template: "v%d.%d": need exactly one %d`}},
		{"template with %s", `board = "t"
[cloners.vlan]
template = "v%s%d"
`, []string{`t.toml:3: cloners.vlan: template: "v%s%d": need exactly one %d`}},
		{"template too long with default max", `board = "t"
[cloners.bridge]
template = "longbridge-%d"
`, []string{`t.toml:3: cloners.bridge: template: template "longbridge-%d" with max 32767 renders "longbridge-32767", 16 bytes: longer than 15`}},
		{"max makes it too long", `board = "t"
[cloners.bridge]
template = "longbridge-%d"
max = 99999
`, []string{`t.toml:4: cloners.bridge: max: 99999 out of range 0-32767`}},
		{"template fits with small max", `board = "t"
[cloners.bridge]
template = "longbridge-%d"
max = 9999
template2 = 1
`, []string{`t.toml:5: cloners.bridge: unknown key "template2"`}},
		{"max too large", `board = "t"
[cloners.vlan]
max = 32768
`, []string{`t.toml:3: cloners.vlan: max: 32768 out of range 0-32767`}},
		{"max negative", `board = "t"
[cloners.vlan]
max = -1
`, []string{`t.toml:3: cloners.vlan: max: -1 out of range 0-32767`}},
		{"template with slash", `board = "t"
[cloners.vlan]
template = "v/%d"
`, []string{`t.toml:3: cloners.vlan: template: "v/%d": '/' is not allowed`}},
		{"same templates", `board = "t"
[cloners.bridge]
template = "if%d"
[cloners.vlan]
template = "if%d"
`, []string{`t.toml:5: cloners.vlan: template: "if%d" renders "if0" (unit 0), which "if%d" renders too (unit 0): their names would collide`}},
		{"port as plain table", `board = "t"
[port]
name = "lan"
`, []string{`t.toml:2: port: is a table, want an array of tables: write [[port]]`}},
		{"inline port array", `board = "t"
port = [
  { name = "a", match.name = "eth*" },
  { name = "b", match.name = "eth*", vlans = [5000] },
]
`, []string{`t.toml:4: port "b": vlans: 5000 out of range 1-4094`}},
		{"quoted keys", pre + `[[port]]
"name" = "lan"
'match'."name" = "eth*"
"vlans" = [10]
"vlan_bridge"."10" = "nope"
`, []string{`t.toml:10: port "lan": vlan_bridge.10: no bridge rule "nope"`}},
		{"strings before the error", pre + `[[port]]
name = "lan"
match.name = """
eth*"""
vlans = [
  # [ a comment with a bracket
  4095,
]
`, []string{`t.toml:12: port "lan": vlans: 4095 out of range 1-4094`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Parse("t.toml", []byte(tt.doc))
			if err == nil {
				t.Fatalf("Parse accepted %+v, want errors %q", p, tt.want)
			}
			if p != nil {
				t.Errorf("Parse returned a profile with an error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not wrap ErrInvalid", err)
			}
			errs := allErrors(t, err)
			if len(errs) != len(tt.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(errs), len(tt.want), err)
			}
			for i, e := range errs {
				if !strings.Contains(e.Error(), tt.want[i]) {
					t.Errorf("error %d = %q, want it to contain %q", i, e, tt.want[i])
				}
			}
		})
	}
}

func TestSeveralErrorsAllReported(t *testing.T) {
	doc := `board = "Bad Board"
colour = "red"
[cloners.bridge]
template = "br"
[[port]]
name = "lan"
match.name = "eth["
bridge = "nope"
vlans = [0, 10, 10, 5000]
vlan_bridge = { 20 = "guest" }
[[port]]
name = "lan"
[[bridge]]
name = "guest"
keep_empty = 1
`
	_, err := Parse("many.toml", []byte(doc))
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	want := []string{
		`many.toml:1: board: "Bad Board" must be`,
		`many.toml:2: unknown key "colour"`,
		`many.toml:4: cloners.bridge: template: "br": need exactly one %d`,
		`many.toml:7: port "lan": match.name: "eth[": syntax error in pattern`,
		`many.toml:8: port "lan": bridge: no bridge rule "nope"`,
		`many.toml:9: port "lan": vlans: 0 out of range 1-4094`,
		`many.toml:9: port "lan": vlans: 10 given twice`,
		`many.toml:9: port "lan": vlans: 5000 out of range 1-4094`,
		`many.toml:10: port "lan": vlan_bridge.20: VLAN 20 is not in vlans`,
		`many.toml:11: port "lan": match: missing`,
		`many.toml:12: port "lan": name: duplicate: port rule "lan" is already defined at line 5`,
		`many.toml:15: bridge "guest": keep_empty: is an integer, want true or false`,
	}
	errs := allErrors(t, err)
	var got []string
	for _, e := range errs {
		got = append(got, e.Error())
	}
	if len(got) != len(want) {
		t.Fatalf("got %d errors, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("error %d = %q, want it to contain %q", i, got[i], want[i])
		}
	}
	// The joined message lists them one a line, in the same order.
	if lines := strings.Split(err.Error(), "\n"); len(lines) != len(want) {
		t.Errorf("joined message has %d lines, want %d", len(lines), len(want))
	}
}

func TestSyntaxErrors(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"unterminated string", "board = \"t\"\n\n[[port]]\nname = \"lan\nmatch.name = \"eth*\"\n", `s.toml:4: syntax error: `},
		{"unterminated array", "board = \"t\"\n[[port]]\nname = \"lan\"\nvlans = [1, 2\n\nmatch.name = \"x\"\n", `s.toml:6: syntax error: `},
		{"duplicate key", "board = \"t\"\nboard = \"u\"\n", `s.toml:2: syntax error: `},
		{"bare word", "board = t\n", `s.toml:1: syntax error: `},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("s.toml", []byte(tt.doc))
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var pe toml.ParseError
			if !errors.As(err, &pe) {
				t.Errorf("err = %v, want a toml.ParseError inside", err)
			}
			if !strings.HasPrefix(err.Error(), tt.want) {
				t.Errorf("err = %q, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestLoadNamesPath(t *testing.T) {
	dir := t.TempDir()
	path := dir + "/bad.toml"
	if err := os.WriteFile(path, []byte("board = \"x\"\n\nvlan = 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:3: unknown key "vlan"`; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %q", err, want)
	}
	if _, err := Load(dir + "/missing.toml"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v, want ErrNotExist", err)
	}
}

// The annotated example in README.md is a valid profile.
func TestReadmeExample(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile("(?s)```toml\n(.*?)```").FindSubmatch(readme)
	if m == nil {
		t.Fatal("no toml block in README.md")
	}
	p, err := Parse("README.md", m[1])
	if err != nil {
		t.Fatalf("README example: %v", err)
	}
	if got := p.Cloners[ClonerBridge]; got != (ClonerSpec{"br%d", 255}) {
		t.Errorf("bridge cloner = %+v", got)
	}
	if got := p.Cloners[ClonerVLAN]; got != (ClonerSpec{"vlan%d", MaxUnit}) {
		t.Errorf("vlan cloner = %+v", got)
	}
	r, ok := p.MatchPort(LinkFacts{Name: "eth1", PermMAC: "52:54:00:AB:CD:EF", Driver: "virtio_net", Bus: "pci0000:00/0000:00:03.0/virtio1"})
	if !ok || r.Name != "lan" || r.VLANBridge[10] != "guest" {
		t.Errorf("MatchPort = %+v, %v", r, ok)
	}
}

func TestDefaultsAndLines(t *testing.T) {
	doc := `# comment
board = "t"

[[bridge]]
name = "lan"
keep_empty = true

[[port]]   # the only port
name = "p"
match.name = "eth0"
bridge = "lan"
vlans = [20, 10]
vlan_bridge = { 10 = "lan" }
`
	p, err := Parse("d.toml", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if p.Source != "d.toml" || p.Board != "t" {
		t.Errorf("Source %q Board %q", p.Source, p.Board)
	}
	wantCl := map[string]ClonerSpec{"bridge": {"bridge%d", 32767}, "vlan": {"vlan%d", 32767}}
	for k, v := range wantCl {
		if p.Cloners[k] != v {
			t.Errorf("Cloners[%s] = %+v, want %+v", k, p.Cloners[k], v)
		}
	}
	if len(p.Cloners) != 2 {
		t.Errorf("Cloners = %v", p.Cloners)
	}
	if len(p.Ports) != 1 || p.Ports[0].Line != 8 || len(p.Bridges) != 1 || p.Bridges[0].Line != 4 {
		t.Fatalf("rules %+v %+v", p.Ports, p.Bridges)
	}
	pr := p.Ports[0]
	if pr.VLANs[0] != 20 || pr.VLANs[1] != 10 || pr.VLANBridge[10] != "lan" || len(pr.VLANBridge) != 1 {
		t.Errorf("port = %+v", pr)
	}
	b, ok := p.Bridge("lan")
	if !ok || !b.KeepEmpty {
		t.Errorf("Bridge(lan) = %+v %v", b, ok)
	}
	if _, ok := p.Bridge("nope"); ok {
		t.Error("Bridge(nope) found")
	}
	if r, ok := p.Port("p"); !ok || r != &p.Ports[0] {
		t.Errorf("Port(p) = %p %v", r, ok)
	}
}

func TestPerPortBridge(t *testing.T) {
	p, err := Parse("pp.toml", []byte("board = \"x\"\n[[port]]\nname = \"usb\"\nmatch.driver = \"cdc_ether\"\nbridge = \"usb\"\n[[bridge]]\nname = \"usb\"\nper_port = true\n"))
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := p.Bridge("usb"); !b.PerPort || b.KeepEmpty {
		t.Errorf("%+v", b)
	}
	_, err = Parse("pp.toml", []byte("board = \"x\"\n[[bridge]]\nname = \"usb\"\nkeep_empty = true\nper_port = true\n"))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "pp.toml:5: bridge \"usb\": per_port") {
		t.Errorf("keep_empty with per_port: %v", err)
	}
}
