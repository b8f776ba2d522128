package qemutest

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// guestPackages are the packages whose tests need a real kernel (they go
// through internal/netnstest, and the host kernel lacks 8021q and bridge
// VLAN filtering): TestGuestKernelTests runs their test binaries inside
// each guest, as root, each in its own network namespace (netnstest.Main
// re-executes the binary with CLONE_NEWNET, as on the host). Run, when set,
// limits a package to the tests the guest can run; the others run on the
// host (qemu-test/README.md, the kernel tests inside the guests says which and why).
var guestPackages = []guestPackage{
	{Pkg: "ifmgr/kernel"},
	{Pkg: "ifmgr/ifname"},
	// The daemon's other tests call iproute2's ip (-batch, link delete
	// group, veths with groups) and the image has only u-root's: they run
	// on the host, which has everything but 8021q. The VLAN ones need
	// 8021q (TestBridgeVLANsFromProfile: bridge VLAN filtering) and use
	// netlink only. ifmgrd and ifctl are the image's own.
	{Pkg: "firmware/daemon", Run: "^(TestVLANEndToEnd|TestProfileVLANsFollowTheirPort|TestCLIContract|TestBridgeVLANsFromProfile)$",
		Env: "UROUTE_TEST_BINDIR=/bin"},
}

type guestPackage struct {
	Pkg  string
	Run  string // -test.run, "" for all
	Skip string // -test.skip: tests that run on the host only, each with why
	Env  string // VAR=value words before the command
}

// guestSkipAllowed are guest tests that may skip, each with why; any other
// skip in a guest fails the run: a kernel test that skips on the host must
// run somewhere, and the guests are that somewhere.
// None today.
var guestSkipAllowed = map[string]string{}

// TestGuestKernelTests cross-compiles the real-kernel test binaries for
// each selected arch, appends them (and their packages' testdata) to the
// image as a second cpio archive, boots once, runs every binary with
// -test.v as root, and reports each guest test as a subtest here:
// TestGuestKernelTests/ARCH/PKG/TestName[/sub]. A guest test that fails
// fails its subtest with the guest's output; one that skips fails too
// unless guestSkipAllowed names it.
func TestGuestKernelTests(t *testing.T) {
	ForEachArch(t, func(t *testing.T, a Arch) {
		kernel := Requirements(t, a)
		start := time.Now()
		image := BuildImage(t, a, Profile("qemu-vlan-hub"))
		mods, modFiles := guestModules(t, a)
		tests := buildGuestTests(t, a, modFiles)
		initrd := filepath.Join(t.TempDir(), "initrd.cpio")
		concat(t, initrd, image, tests)
		t.Logf("%s: images ready in %v", a.Name, time.Since(start).Round(100*time.Millisecond))

		// The test binaries and their t.TempDirs live in RAM.
		mem := a.Mem
		if mem < 512 {
			mem = 512
		}
		vm := Boot(t, Config{Arch: a, Kernel: kernel, Initrd: initrd, Mem: mem,
			Timeout: a.Scale(20 * time.Minute)})
		ready, err := vm.WaitShell(a.Scale(180 * time.Second))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: shell after %v", a.Name, ready.Round(100*time.Millisecond))
		for _, m := range mods {
			vm.MustRun("insmod /guesttests/modules/"+m, a.Scale(60*time.Second))
		}
		for _, gp := range guestPackages {
			pkg := gp.Pkg
			t.Run(pkg, func(t *testing.T) {
				vm.Use(t)
				runStart := time.Now()
				dir := "/guesttests/" + pkg
				bin := dir + "/" + filepath.Base(pkg) + ".test"
				// UROUTE_CAPTURE=1: ifmgr/kernel's TestCaptureLinkMessages
				// prints the kernel's RTM_NEWLINK bytes (fixtures).
				cmd := fmt.Sprintf("cd %s && UROUTE_CAPTURE=1 %s %s -test.v -test.timeout=%v", dir, gp.Env, bin, a.Scale(10*time.Minute))
				if gp.Run != "" {
					cmd += " -test.run '" + gp.Run + "'"
				}
				if gp.Skip != "" {
					cmd += " -test.skip '" + gp.Skip + "'"
				}
				out, status, err := vm.Run(cmd+" 2>&1", a.Scale(12*time.Minute))
				if err != nil {
					t.Fatalf("%s: %v", bin, err)
				}
				t.Logf("%s ran in %v, exit status %d", bin, time.Since(runStart).Round(100*time.Millisecond), status)
				results := reportGuestTests(t, pkg, out)
				saveCaptures(t, a, pkg, out)
				if status != 0 && results.failed == 0 {
					// A panic, a timeout, a TestMain exit: no test said FAIL.
					t.Errorf("%s: exit status %d without a failed test:\n%s", bin, status, out)
				}
				if results.ran == 0 {
					t.Errorf("%s: no test ran:\n%s", bin, out)
				}
			})
		}
		t.Logf("%s: %v in all (boot, %d binaries, the image build excluded when cached)", a.Name, time.Since(start).Round(100*time.Millisecond), len(guestPackages))
	})
}

// buildGuestTests compiles the guestPackages' test binaries for a and
// packs them, with each package's testdata, into a newc cpio archive under
// /guesttests/PKG, cached in $UROUTE_CACHE/guesttests by the hash of its
// content (go's build cache makes the compile itself cheap when nothing
// changed).
func buildGuestTests(t *testing.T, a Arch, modFiles map[string]string) string {
	t.Helper()
	tmp := t.TempDir()
	files := map[string]string{} // archive path -> host file
	for k, v := range modFiles {
		files[k] = v
	}
	for _, gp := range guestPackages {
		pkg := gp.Pkg
		out := filepath.Join(tmp, strings.ReplaceAll(pkg, "/", "_")+".test")
		cmd := exec.Command("go", "test", "-c", "-trimpath", "-ldflags=-s -w -buildid=", "-o", out, "./"+pkg)
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), guestGoEnv(a)...)
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go test -c ./%s for %s: %v\n%s", pkg, a.Name, err, b)
		}
		files["guesttests/"+pkg+"/"+filepath.Base(pkg)+".test"] = out
		td := filepath.Join(RepoRoot(), pkg, "testdata")
		_ = filepath.WalkDir(td, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() {
				rel, _ := filepath.Rel(filepath.Join(RepoRoot(), pkg), p)
				files["guesttests/"+pkg+"/"+filepath.ToSlash(rel)] = p
			}
			return nil
		})
	}
	var buf bytes.Buffer
	if err := writeCpio(&buf, files); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(buf.Bytes())
	path := filepath.Join(CacheDir(), "guesttests", a.Name+"-"+hex.EncodeToString(sum[:8])+".cpio")
	if _, err := os.Stat(path); err == nil {
		t.Logf("reusing %s (same test binaries)", path)
		return path
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	// Older archives of this arch are of no further use.
	old, _ := filepath.Glob(filepath.Join(filepath.Dir(path), a.Name+"-"+strings.Repeat("?", 16)+".cpio"))
	for _, f := range old {
		os.Remove(f)
	}
	if err := os.WriteFile(path+".tmp", buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
	t.Logf("packed %d files into %s (%d KiB)", len(files), path, buf.Len()>>10)
	return path
}

// guestGoEnv is the Go environment that builds for a's guest, as
// scripts/build-image.sh sets it.
func guestGoEnv(a Arch) []string {
	env := []string{"CGO_ENABLED=0", "GOOS=linux", "GOFLAGS="}
	switch a.Name {
	case "amd64":
		env = append(env, "GOARCH=amd64")
	case "arm64":
		env = append(env, "GOARCH=arm64")
	case "armv7":
		env = append(env, "GOARCH=arm", "GOARM=7")
	case "mipsle":
		env = append(env, "GOARCH=mipsle", "GOMIPS=softfloat")
	default:
		panic("guestGoEnv: unknown arch " + a.Name)
	}
	return env
}

// writeCpio writes files (archive path -> host file) as a newc archive
// with their directories, zeroed metadata and a trailer, the format the
// kernel unpacks into the initramfs; appended to the image, it adds to
// the image's files (the kernel unpacks concatenated archives in turn).
func writeCpio(w io.Writer, files map[string]string) error {
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	dirs := map[string]bool{}
	ino := 1
	var off int
	put := func(name string, mode uint32, data []byte) error {
		hdr := fmt.Sprintf("070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			ino, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name)+1, 0)
		ino++
		rec := append([]byte(hdr), name...)
		rec = append(rec, 0)
		for (off+len(rec))%4 != 0 {
			rec = append(rec, 0)
		}
		rec = append(rec, data...)
		for (off+len(rec))%4 != 0 {
			rec = append(rec, 0)
		}
		n, err := w.Write(rec)
		off += n
		return err
	}
	for _, n := range names {
		parts := strings.Split(n, "/")
		for i := 1; i < len(parts); i++ {
			d := strings.Join(parts[:i], "/")
			if !dirs[d] {
				dirs[d] = true
				if err := put(d, 0o040755, nil); err != nil {
					return err
				}
			}
		}
		data, err := os.ReadFile(files[n])
		if err != nil {
			return err
		}
		if err := put(n, 0o100755, data); err != nil {
			return err
		}
	}
	return put("TRAILER!!!", 0, nil)
}

// concat writes the files' bytes one after another to out.
func concat(t *testing.T, out string, parts ...string) {
	t.Helper()
	f, err := os.Create(out)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range parts {
		in, err := os.Open(p)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.Copy(f, in)
		in.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// testEvent is one line of "go tool test2json" output.
type testEvent struct {
	Action string
	Test   string
	Output string
}

// guestTest is one guest test's result: its output, how it ended, and its
// subtests in the order they ran.
type guestTest struct {
	name   string
	output strings.Builder
	action string // pass, fail, skip; "" if it never ended
	subs   []*guestTest
	byName map[string]*guestTest
}

func (g *guestTest) child(name string) *guestTest {
	if g.byName == nil {
		g.byName = map[string]*guestTest{}
	}
	c := g.byName[name]
	if c == nil {
		c = &guestTest{name: name}
		g.byName[name] = c
		g.subs = append(g.subs, c)
	}
	return c
}

type guestResults struct{ ran, failed int }

// reportGuestTests turns a guest binary's -test.v output into subtests of
// t (through go tool test2json, the parser "go test -json" itself uses).
func reportGuestTests(t *testing.T, pkg, out string) guestResults {
	t.Helper()
	cmd := exec.Command("go", "tool", "test2json", "-p", pkg)
	cmd.Stdin = strings.NewReader(out)
	js, err := cmd.Output()
	if err != nil {
		t.Fatalf("go tool test2json: %v", err)
	}
	root := &guestTest{}
	sc := bufio.NewScanner(bytes.NewReader(js))
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var ev testEvent
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil || ev.Test == "" {
			continue
		}
		g := root
		for _, part := range strings.Split(ev.Test, "/") {
			g = g.child(part)
		}
		switch ev.Action {
		case "output":
			g.output.WriteString(ev.Output)
		case "pass", "fail", "skip":
			g.action = ev.Action
		}
	}
	var res guestResults
	for _, g := range root.subs {
		res.ran++
		if g.action == "fail" || g.action == "" {
			res.failed++
		}
		replay(t, pkg, g.name, g)
	}
	return res
}

// replay reports g as the subtest name of t, with its output and result.
// name is its full name (TestX/sub), for guestSkipAllowed.
func replay(t *testing.T, pkg, name string, g *guestTest) {
	t.Run(g.name, func(t *testing.T) {
		for _, s := range g.subs {
			replay(t, pkg, name+"/"+s.name, s)
		}
		out := strings.TrimRight(g.output.String(), "\n")
		switch g.action {
		case "pass":
			t.Log("guest:\n" + out)
		case "skip":
			if why, ok := guestSkipAllowed[pkg+"."+name]; ok {
				t.Skipf("guest skipped (%s):\n%s", why, out)
			}
			t.Errorf("guest skipped a kernel test, which then runs nowhere:\n%s", out)
		case "fail":
			t.Errorf("guest:\n%s", out)
		default:
			t.Errorf("guest test never ended (panic or timeout?):\n%s", out)
		}
	})
}

// guestTestModules are kernel modules the tests need and a router image
// does not carry: veth (the tests' links with a peer). They come from the
// same Debian kernel package as the image's (scripts/fetch-kernel.sh with
// EXTRA_MODULES, into $UROUTE_CACHE/guesttests/KERNELDIR-veth).
const guestTestModules = "veth"

// guestModules returns the modules to insmod in the guest, in order (those
// of the test kernel dir's load-order the image does not load), and their
// archive paths -> host files.
func guestModules(t *testing.T, a Arch) ([]string, map[string]string) {
	t.Helper()
	dir := filepath.Join(CacheDir(), "guesttests", filepath.Base(a.KernelDir())+"-veth")
	if _, err := os.Stat(filepath.Join(dir, "modules", "load-order")); err != nil {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(RepoRoot(), "scripts", "fetch-kernel.sh"), a.Name, dir)
		cmd.Env = append(os.Environ(), "EXTRA_MODULES="+guestTestModules)
		if a.Flavour != "" {
			cmd.Env = append(cmd.Env, "FLAVOUR="+a.Flavour)
		}
		if b, err := cmd.CombinedOutput(); err != nil {
			os.RemoveAll(dir)
			t.Fatalf("fetch-kernel.sh %s (for %s): %v\n%s", a.Name, guestTestModules, err, b)
		}
	}
	want, err := os.ReadFile(filepath.Join(a.KernelDir(), "kernel.version"))
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(dir, "kernel.version"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("%s has kernel %q, the image's is %q: remove it to fetch the modules again (%v)", dir, got, want, err)
	}
	loaded := map[string]bool{}
	base, err := os.ReadFile(filepath.Join(a.KernelDir(), "modules", "load-order"))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range strings.Fields(string(base)) {
		loaded[m] = true
	}
	order, err := os.ReadFile(filepath.Join(dir, "modules", "load-order"))
	if err != nil {
		t.Fatal(err)
	}
	var mods []string
	files := map[string]string{}
	for _, m := range strings.Fields(string(order)) {
		if !loaded[m] {
			mods = append(mods, m)
			files["guesttests/modules/"+m] = filepath.Join(dir, "modules", m)
		}
	}
	if len(mods) == 0 {
		t.Fatalf("%s: no module beyond the image's (want %s)", dir, guestTestModules)
	}
	return mods, files
}

// saveCaptures writes the "capture: KIND HEX" lines of a guest's output to
// PKG/testdata/newlink-ARCH-KIND.hex when UROUTE_WRITE_FIXTURES=1 (the
// fixtures are committed; a capture differs run to run in its MAC and
// counters, so they are not compared).
func saveCaptures(t *testing.T, a Arch, pkg, out string) {
	t.Helper()
	n := 0
	for _, l := range strings.Split(out, "\n") {
		i := strings.Index(l, "capture: ")
		if i < 0 {
			continue
		}
		f := strings.Fields(l[i+len("capture: "):])
		if len(f) != 2 {
			continue
		}
		n++
		if os.Getenv("UROUTE_WRITE_FIXTURES") != "1" {
			continue
		}
		path := filepath.Join(RepoRoot(), pkg, "testdata", fmt.Sprintf("newlink-%s-%s.hex", a.Name, f[0]))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(f[1]+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("wrote %s", path)
	}
	if n > 0 && os.Getenv("UROUTE_WRITE_FIXTURES") != "1" {
		t.Logf("%d captures (UROUTE_WRITE_FIXTURES=1 writes them to %s/testdata)", n, pkg)
	}
}
