package kmod

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

func TestCanon(t *testing.T) {
	for in, want := range map[string]string{
		"virtio_net":                      "virtio_net",
		"crc32c-generic":                  "crc32c_generic",
		"kernel/net/802/garp.ko":          "garp",
		"/x/drivers/mtd/ubi/ubi.ko.xz":    "ubi",
		"zstd_compress.ko.zst":            "zstd_compress",
		"kernel/crypto/crc32c-generic.ko": "crc32c_generic",
	} {
		if got := Canon(in); got != want {
			t.Errorf("Canon(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadInfo(t *testing.T) {
	in, err := ReadInfo("testdata/fake.ko")
	if err != nil {
		t.Fatal(err)
	}
	want := Info{Name: "fake", Depends: []string{"stp", "llc_x"}, Vermagic: "6.1.0-57-amd64 SMP preempt mod_unload modversions "}
	if !reflect.DeepEqual(in, want) {
		t.Errorf("got %+v, want %+v", in, want)
	}
	if _, err := ReadInfo("testdata/fake.c"); err == nil {
		t.Error("a C file read as a module")
	}
}

func TestParseModinfoEmptyDepends(t *testing.T) {
	in := ParseModinfo([]byte("depends=\x00name=virtio\x00junk\x00"))
	if in.Name != "virtio" || len(in.Depends) != 0 {
		t.Errorf("%+v", in)
	}
}

// graph is a Set over a dependency table.
func graph(deps map[string][]string, builtin ...string) Set {
	s := Set{Modules: map[string]bool{}, Builtin: map[string]bool{}, Soft: map[string][]string{},
		Depends: func(m string) ([]string, error) { return deps[m], nil }}
	for m := range deps {
		s.Modules[m] = true
	}
	for _, b := range builtin {
		s.Builtin[b] = true
	}
	return s
}

// The bridge/8021q corner of a real kernel (Debian's 4kc-malta), with
// af_packet built in and jffs2 missing.
func TestResolveRealShape(t *testing.T) {
	s := graph(map[string][]string{
		"8021q": {"mrp", "garp"}, "garp": {"stp", "llc"}, "stp": {"llc"}, "llc": nil, "mrp": nil,
		"bridge": {"stp", "llc"}, "ubifs": {"ubi"}, "ubi": nil, "zstd": {"zstd_compress"}, "zstd_compress": nil,
		"deflate": nil,
	}, "af_packet", "mtd")
	s.Soft = SoftDeps
	p, err := s.Resolve([]string{"af_packet", "8021q", "bridge", "ubifs", "jffs2"})
	if err != nil {
		t.Fatal(err)
	}
	want := Plan{
		Order:   []string{"mrp", "llc", "stp", "garp", "8021q", "bridge", "ubi", "zstd_compress", "zstd", "deflate", "ubifs"},
		Builtin: []string{"af_packet"},
		Absent:  []string{"jffs2"},
	}
	if !reflect.DeepEqual(p, want) {
		t.Errorf("got  %+v\nwant %+v", p, want)
	}
}

func TestResolveErrors(t *testing.T) {
	_, err := graph(map[string][]string{"a": {"b"}, "b": {"c"}, "c": {"a"}}).Resolve([]string{"a"})
	if !errors.Is(err, ErrCycle) || !strings.Contains(err.Error(), "a -> b -> c -> a") {
		t.Errorf("cycle: %v", err)
	}
	_, err = graph(map[string][]string{"a": {"nowhere"}}).Resolve([]string{"a"})
	if !errors.Is(err, ErrMissing) || !strings.Contains(err.Error(), "a needs nowhere") {
		t.Errorf("missing: %v", err)
	}
	// A soft dependency is optional.
	s := graph(map[string][]string{"a": nil})
	s.Soft = map[string][]string{"a": {"gone"}}
	if p, err := s.Resolve([]string{"a"}); err != nil || !reflect.DeepEqual(p.Order, []string{"a"}) {
		t.Errorf("soft: %v %v", p, err)
	}
	boom := errors.New("unreadable")
	s = graph(map[string][]string{"a": nil})
	s.Depends = func(string) ([]string, error) { return nil, boom }
	if _, err := s.Resolve([]string{"a"}); !errors.Is(err, boom) {
		t.Errorf("read error: %v", err)
	}
}

// Property: on random acyclic graphs every module comes once, after all
// of its dependencies, and everything wanted (and only what it reaches)
// is in the order.
func TestResolveRandomDAGs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 500; round++ {
		n := 1 + rng.IntN(30)
		deps := map[string][]string{}
		name := func(i int) string { return fmt.Sprintf("m%d", i) }
		for i := 0; i < n; i++ {
			var ds []string
			for j := 0; j < i; j++ { // edges only to lower numbers: acyclic
				if rng.IntN(4) == 0 {
					ds = append(ds, name(j))
				}
			}
			deps[name(i)] = ds
		}
		var wanted []string
		for i := 0; i < 1+rng.IntN(5); i++ {
			wanted = append(wanted, name(rng.IntN(n)))
		}
		p, err := graph(deps).Resolve(wanted)
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		pos := map[string]int{}
		for i, m := range p.Order {
			if _, dup := pos[m]; dup {
				t.Fatalf("round %d: %s twice in %v", round, m, p.Order)
			}
			pos[m] = i
		}
		reach := map[string]bool{}
		var walk func(string)
		walk = func(m string) {
			if reach[m] {
				return
			}
			reach[m] = true
			for _, d := range deps[m] {
				walk(d)
			}
		}
		for _, w := range wanted {
			walk(w)
		}
		if len(reach) != len(p.Order) {
			t.Fatalf("round %d: order %v, reachable %v", round, p.Order, reach)
		}
		for m, i := range pos {
			for _, d := range deps[m] {
				if j, ok := pos[d]; !ok || j > i {
					t.Fatalf("round %d: %s at %d before its dependency %s in %v", round, m, i, d, p.Order)
				}
			}
		}
	}
}

func TestLoadOrderRoundTrip(t *testing.T) {
	files := []string{"virtio.ko", "virtio_ring.ko", "8021q.ko"}
	got, err := ParseLoadOrder("# written by uroute-modules\n" + FormatLoadOrder(files) + "\n")
	if err != nil || !reflect.DeepEqual(got, files) {
		t.Errorf("got %q, %v", got, err)
	}
	names, err := ParseLoadOrder("a.ko\n../evil.ko\nsub/x.ko\nnotamodule\n..\nb.ko\n")
	if want := []string{"a.ko", "b.ko"}; !reflect.DeepEqual(names, want) {
		t.Errorf("got %q, want %q", names, want)
	}
	if err == nil || !strings.Contains(err.Error(), "line 2") || !strings.Contains(err.Error(), "line 5") {
		t.Errorf("errors: %v", err)
	}
}
