package ifname_test

import (
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/mdlayher/netlink"
	"github.com/uroute/uroute/ifmgr/ifname"
	"github.com/uroute/uroute/internal/netnstest"
	"golang.org/x/sys/unix"
)

func TestMain(m *testing.M) { netnstest.Main(m) }

// nameCases pins Valid to the kernel's dev_valid_name. kernelOK is what
// the kernel answers to a bridge of that name (TestValidMatchesKernel asks
// it); nil want means Valid accepts.
var nameCases = []struct {
	name     string
	want     error // nil: valid
	kernelOK bool
	noKernel bool // not representable in a netlink string: the kernel would see another name
}{
	{"", ifname.ErrBadName, false, false},
	{".", ifname.ErrBadName, false, false},
	{"..", ifname.ErrBadName, false, false},
	{"...", nil, true, false},
	{".a", nil, true, false},
	{"a/b", ifname.ErrBadName, false, false},
	{"/", ifname.ErrBadName, false, false},
	{"a:b", ifname.ErrBadName, false, false},
	{"a b", ifname.ErrBadName, false, false},
	{"a\tb", ifname.ErrBadName, false, false},
	{"a\nb", ifname.ErrBadName, false, false},
	{"a\vb", ifname.ErrBadName, false, false},
	{"a\fb", ifname.ErrBadName, false, false},
	{"a\rb", ifname.ErrBadName, false, false},
	{"a\xa0b", ifname.ErrBadName, false, false}, // Latin-1 NBSP: the kernel's isspace says yes
	{"\u00e0", ifname.ErrBadName, false, false}, // "à" is C3 A0 in UTF-8: the A0 byte is a space to the kernel
	{"\u00e9", nil, true, false},                // "é" is C3 A9: fine
	{"a\x00b", ifname.ErrBadName, false, true},
	{"a\x01b", nil, true, false}, // control bytes are not isspace
	{"a\x1fb", nil, true, false},
	{"a\x7fb", nil, true, false},
	{"a\x85b", nil, true, false}, // NEL is not a space in the kernel's table
	{"eth0", nil, true, false},
	{"br-lan.10", nil, true, false},
	{"0", nil, true, false},
	{"123456789012345", nil, true, false}, // 15 bytes: the longest
	{"1234567890123456", ifname.ErrNameTooLong, false, false},
	{strings.Repeat("x", 64), ifname.ErrNameTooLong, false, false},
}

func TestValid(t *testing.T) {
	for _, tc := range nameCases {
		err := ifname.Valid(tc.name)
		switch {
		case tc.want == nil && err != nil:
			t.Errorf("Valid(%q) = %v, want nil", tc.name, err)
		case tc.want != nil && !errors.Is(err, tc.want):
			t.Errorf("Valid(%q) = %v, want %v", tc.name, err, tc.want)
		}
		if err != nil && !errors.Is(err, ifname.ErrBadName) {
			t.Errorf("Valid(%q) = %v, does not match ErrBadName", tc.name, err)
		}
		if (err == nil) != tc.kernelOK && !tc.noKernel {
			t.Errorf("table row %q: Valid and the recorded kernel answer disagree", tc.name)
		}
	}
}

// TestValidMatchesKernel creates a bridge of every name of the table in a
// throw-away network namespace, over raw rtnetlink (not through ifmgr's
// kernel package, which applies Valid first), and checks that the kernel
// accepts exactly the names Valid accepts.
func TestValidMatchesKernel(t *testing.T) {
	netnstest.Require(t)
	c, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, tc := range nameCases {
		if tc.noKernel {
			continue
		}
		// By hand: rtnetlink leaves an empty name out, and a create
		// without IFLA_IFNAME gets a kernel-chosen name.
		ae := netlink.NewAttributeEncoder()
		ae.String(unix.IFLA_IFNAME, tc.name)
		ae.Nested(unix.IFLA_LINKINFO, func(nae *netlink.AttributeEncoder) error {
			nae.String(unix.IFLA_INFO_KIND, "bridge")
			return nil
		})
		attrs, err := ae.Encode()
		if err != nil {
			t.Fatal(err)
		}
		ifinfomsg := make([]byte, unix.SizeofIfInfomsg) // AF_UNSPEC, no index, no flags
		_, err = c.Execute(netlink.Message{
			Header: netlink.Header{Type: unix.RTM_NEWLINK, Flags: netlink.Request | netlink.Acknowledge | netlink.Create | netlink.Excl},
			Data:   append(ifinfomsg, attrs...),
		})
		if (err == nil) != tc.kernelOK {
			t.Errorf("kernel create bridge %q: %v, table says accepted=%v", tc.name, err, tc.kernelOK)
		}
	}
	// The accepted names exist under exactly those names: the kernel took
	// them as they are, nothing was renamed or cut.
	links, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, l := range links {
		have[l.Name] = true
	}
	for _, tc := range nameCases {
		if tc.kernelOK && !have[tc.name] {
			t.Errorf("bridge %q accepted but not listed under that name", tc.name)
		}
	}
}

func TestValidVID(t *testing.T) {
	for vid, ok := range map[int]bool{-1: false, 0: false, 1: true, 100: true, 4094: true, 4095: false, 65536: false} {
		if err := ifname.ValidVID(vid); (err == nil) != ok || (err != nil && !errors.Is(err, ifname.ErrBadVID)) {
			t.Errorf("ValidVID(%d) = %v", vid, err)
		}
	}
}

func TestTemplate(t *testing.T) {
	for _, tc := range []struct {
		tmpl string
		err  string // "" = accepted
	}{
		{"bridge%d", ""},
		{"br-%d-lan", ""},
		{"%dx", ""},
		{"br", "need exactly one %d"},
		{"v%d.%d", "need exactly one %d"},
		{"v%s%d", "need exactly one %d"},
		{"%d", "a bare number"},
		{"v/%d", "'/' is not allowed"},
		{"v:%d", "':' is not allowed"},
		{"v %d", "' ' is not allowed"},
		{"v\xa0%d", "'\\u00a0' is not allowed"},
	} {
		_, err := ifname.ParseTemplate(tc.tmpl)
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("ParseTemplate(%q) = %v", tc.tmpl, err)
		case tc.err != "" && (!errors.Is(err, ifname.ErrBadTemplate) || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("ParseTemplate(%q) = %v, want %q", tc.tmpl, err, tc.err)
		}
	}
	tm, _ := ifname.ParseTemplate("br-%d-x")
	if err := tm.Fits(ifname.MaxUnit); err != nil {
		t.Errorf("Fits(MaxUnit) = %v", err)
	}
	long, _ := ifname.ParseTemplate("longbridge-%d")
	if err := long.Fits(ifname.MaxUnit); !errors.Is(err, ifname.ErrNameTooLong) {
		t.Errorf("Fits = %v, want ErrNameTooLong", err)
	}
	for _, u := range []uint32{0, 1, 9, 10, 32767, 1<<32 - 1} {
		name := tm.Render(u)
		if got, ok := tm.Unit(name); !ok || got != uint64(u) {
			t.Errorf("Unit(Render(%d) = %q) = %d, %v", u, name, got, ok)
		}
	}
	for _, name := range []string{"br-07-x", "br-+7-x", "br--x", "br-7-", "br-7-xx", "xbr-7-x", "br-7a-x"} {
		if u, ok := tm.Unit(name); ok {
			t.Errorf("Unit(%q) = %d, want not a name of %s", name, u, tm)
		}
	}
	if u, ok := tm.Unit("br-99999999999999999999999-x"); !ok || u != 1<<64-1 {
		t.Errorf("Unit(huge) = %d, %v, want out of range", u, ok)
	}
}

// Overlap against brute force: every pair of small templates over small
// unit ranges, where rendering every name of both is cheap. The fixed parts
// are drawn from an alphabet of digits and one letter, so that unit digits
// and fixed digits can run into each other ("b%d" and "b1%d", "b%d1" and
// "b1%d", "%d0" and "%d"), which is where a shortcut would go wrong.
func TestOverlapMatchesBruteForce(t *testing.T) {
	var fixed []string
	var gen func(prefix string, n int)
	gen = func(prefix string, n int) {
		fixed = append(fixed, prefix)
		if n == 0 {
			return
		}
		for _, c := range []string{"0", "1", "b"} {
			gen(prefix+c, n-1)
		}
	}
	gen("", 2)
	var tmpls []ifname.Template
	for _, p := range fixed {
		for _, s := range []string{"", "0", "1", "b", "01", "1b"} {
			if tm, err := ifname.ParseTemplate(p + "%d" + s); err == nil {
				tmpls = append(tmpls, tm)
			}
		}
	}
	maxes := []uint32{0, 10, 11, 120}
	checked, collisions := 0, 0
	for _, a := range tmpls {
		for _, b := range tmpls {
			for _, am := range maxes {
				for _, bm := range maxes {
					want := bruteOverlap(a, am, b, bm)
					name, au, bu, got := ifname.Overlap(a, am, b, bm)
					checked++
					if got != want {
						t.Fatalf("Overlap(%s max %d, %s max %d) = %v, brute force says %v", a, am, b, bm, got, want)
					}
					if got {
						collisions++
						if au > am || bu > bm || a.Render(au) != name || b.Render(bu) != name {
							t.Fatalf("Overlap(%s max %d, %s max %d) = %q units %d %d: not a common name", a, am, b, bm, name, au, bu)
						}
					}
				}
			}
		}
	}
	if collisions == 0 || collisions == checked {
		t.Fatalf("%d collisions in %d pairs: the generator does not exercise both answers", collisions, checked)
	}
	t.Logf("%d template pairs, %d collide", checked, collisions)
}

func bruteOverlap(a ifname.Template, am uint32, b ifname.Template, bm uint32) bool {
	names := map[string]bool{}
	for u := uint32(0); u <= am; u++ {
		names[a.Render(u)] = true
	}
	for u := uint32(0); u <= bm; u++ {
		if names[b.Render(u)] {
			return true
		}
	}
	return false
}

// The full ranges: the shipped defaults never collide, and neither do
// templates told apart by a letter; a digit after the prefix does.
func TestOverlapFullRange(t *testing.T) {
	tm := func(s string) ifname.Template {
		x, err := ifname.ParseTemplate(s)
		if err != nil {
			t.Fatal(err)
		}
		return x
	}
	for _, tc := range []struct {
		a, b string
		want string
	}{
		{"bridge%d", "vlan%d", ""},
		{"br%d", "br%dx", ""},
		{"b%d", "br%d", ""},
		{"br%d", "br1%d", "br10"},
		{"br%d", "br0%d", ""},
		{"%dx", "1%dx", "10x"},
		{"br%d", "br%d", "br0"},
	} {
		name, _, _, ok := ifname.Overlap(tm(tc.a), ifname.MaxUnit, tm(tc.b), ifname.MaxUnit)
		if ok != (tc.want != "") || name != tc.want {
			t.Errorf("Overlap(%s, %s) = %q %v, want %q", tc.a, tc.b, name, ok, tc.want)
		}
	}
}
