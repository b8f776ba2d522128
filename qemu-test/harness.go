// Package qemutest boots uroute's image under QEMU and drives the guest's
// console shell from Go tests, on the four machines of the image (Arches):
// amd64 q35, arm64 and armv7 virt, mipsle malta, all under TCG.
//
// The QEMU command line comes from qemu-test/qemu, as scripts/run-qemu.sh's
// and the demo's do (-nodefaults, virtio-net NICs on hubs, an empty
// pcie-root-port rp1 where the machine has PCIe, an optional virtio-blk
// data disk and QMP socket, more devices from Config.Devices); the caller
// picks each NIC's hub and MAC. The serial console is QEMU's stdio,
// on pipes: the harness keeps everything the guest prints (VM.Console),
// types commands into it (VM.Run), and prints the whole console when a
// test fails.
package qemutest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/uroute/uroute/qemu-test/console"
	"github.com/uroute/uroute/qemu-test/qemu"
	"github.com/uroute/uroute/qemu-test/qmp"
)

// RepoRoot is the module root (the directory above qemu-test).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// CacheDir is $UROUTE_CACHE or ~/.cache/uroute (qemu.CacheDir).
func CacheDir() string { return qemu.CacheDir() }

// Arch is one QEMU machine the image is built and booted for: an entry of
// qemu.Machines, the one machine table.
type Arch = qemu.Machine

// ArchByName is the entry of Arches named name; it panics on a typo.
func ArchByName(name string) Arch {
	m, err := qemu.MachineByName(name)
	if err != nil {
		panic(err)
	}
	return m
}

// Arches are the machines of the QEMU suite, in the order tests run them.
var Arches = qemu.Machines

// SelectedArches are Arches, or those named in $UROUTE_QEMU_ARCHES
// (comma-separated), for running one machine by hand.
func SelectedArches() []Arch {
	only := os.Getenv("UROUTE_QEMU_ARCHES")
	if only == "" {
		return Arches
	}
	var out []Arch
	for _, a := range Arches {
		for _, n := range strings.Split(only, ",") {
			if strings.TrimSpace(n) == a.Name {
				out = append(out, a)
			}
		}
	}
	return out
}

// ForEachArch runs fn as a subtest per selected arch, one after another:
// two TCG guests at once on a 2-core machine only make both slower.
func ForEachArch(t *testing.T, fn func(t *testing.T, a Arch)) {
	for _, a := range SelectedArches() {
		t.Run(a.Name, func(t *testing.T) { fn(t, a) })
	}
}

// Requirements skips the test unless UROUTE_QEMU=1. With it, the arch's
// QEMU and its cached kernel and modules must be there: a suite asked to
// run must not pass by skipping, so their absence fails the test. It
// returns the kernel's path.
func Requirements(t testing.TB, a Arch) (kernel string) {
	t.Helper()
	if os.Getenv("UROUTE_QEMU") != "1" {
		t.Skip("QEMU boot test: set UROUTE_QEMU=1 to run it (needs QEMU and the cached kernels; scripts/test.sh does both)")
	}
	if _, err := exec.LookPath(a.QEMU); err != nil {
		t.Fatalf("%s not installed (apt-get install --no-install-recommends %s)", a.QEMU, a.Package)
	}
	kdir := a.KernelDir()
	for _, f := range []string{"vmlinuz", "modules/load-order"} {
		if _, err := os.Stat(filepath.Join(kdir, f)); err != nil {
			flavour := ""
			if a.Flavour != "" {
				flavour = "FLAVOUR=" + a.Flavour + " "
			}
			t.Fatalf("cached kernel missing (%v); run %sscripts/fetch-kernel.sh %s %s", err, flavour, a.Name, kdir)
		}
	}
	return filepath.Join(kdir, "vmlinuz")
}

// imageMu serializes image builds: each one is a full u-root build.
var imageMu sync.Mutex

// lockImageBuilds serializes image builds across processes as imageMu does
// within one: scripts/test.sh runs two QEMU lanes (two go test processes)
// at once, and both need some of the same images. Holding the lock through
// the cache look-up, the second one finds the image the first built
// instead of building it again. The returned func releases it.
func lockImageBuilds(t testing.TB) func() {
	t.Helper()
	dir := filepath.Join(CacheDir(), "images")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		t.Fatalf("lock %s: %v", f.Name(), err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Logf("waited %v for another process's image build", waited.Round(100*time.Millisecond))
	}
	return func() { f.Close() } // closing the file drops the lock
}

// BuildImage is the arch's image with the board profile at profile and
// the cached kernel's modules (qemu.BuildImage: scripts/build-image.sh,
// cached in $UROUTE_CACHE/images by a hash of every input, so a rerun
// with nothing changed builds nothing).
func BuildImage(t testing.TB, a Arch, profile string) string {
	t.Helper()
	return BuildImageVariant(t, a, profile, qemu.Variant{})
}

// BuildImageVariant is BuildImage for a test's image with more in it
// (qemu.Variant: the crash test's workload command, the upgrade test's
// trusted key), cached by content like every image. Every test image also
// has qemu.TestTools (uroute-probe), which the router's image does not.
func BuildImageVariant(t testing.TB, a Arch, profile string, v qemu.Variant) string {
	t.Helper()
	imageMu.Lock()
	defer imageMu.Unlock()
	defer lockImageBuilds(t)()
	var log bytes.Buffer
	img, err := qemu.BuildImageVariant(context.Background(), RepoRoot(), a, profile, v.WithTestTools(), &log)
	if err != nil {
		t.Fatalf("%v\n%s", err, log.Bytes())
	}
	if img.Built {
		t.Logf("built %s in %v", img.Path, img.Took.Round(100*time.Millisecond))
	} else {
		t.Logf("reusing %s (same inputs; key computed in %v)", img.Path, img.Took.Round(time.Millisecond))
	}
	return img.Path
}

// NewDataDisk makes an ext4 file system image of sizeMB in a temporary
// directory, for the guest's /dev/vda.
func NewDataDisk(t testing.TB, sizeMB int) string {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "data.img")
	f, err := os.Create(disk)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(int64(sizeMB) << 20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	if b, err := exec.Command("mkfs.ext4", "-q", "-F", disk).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, b)
	}
	return disk
}

// Profile is the path of a test profile in qemu-test/profiles.
func Profile(name string) string {
	return filepath.Join(RepoRoot(), "qemu-test", "profiles", name+".toml")
}

// NIC is one virtio-net NIC on a QEMU hub (qemu.NIC). It is its own type
// here so that tests keep writing NIC{hub, mac} (vet refuses unkeyed
// literals of another package's struct).
type NIC struct {
	Hub int
	MAC string
}

// DefaultNICs are run-qemu.sh's: 52:54:00:12:34:01 and :02, each on its
// own hub.
var DefaultNICs = []NIC{{0, "52:54:00:12:34:01"}, {1, "52:54:00:12:34:02"}}

// Config says how to boot. With Kernel "", nothing is booted directly:
// the guest starts in the firmware given among Devices (qemu.BIOS,
// qemu.PFlash), which boots from the disks.
type Config struct {
	Arch           Arch
	Kernel, Initrd string
	NICs           []NIC         // default DefaultNICs
	Data           string        // data disk image (virtio-blk, /dev/vda); none if ""
	QMP            string        // QMP unix socket path; none if ""
	Mem            int           // MB, default Arch.Mem
	Timeout        time.Duration // QEMU is killed after it; default 15 min, scaled (a bound for a hung guest, not a speed check)
	Append         string        // extra kernel parameters
	// Devices come after the standard ones, in order: a qemu.Disk here
	// is /dev/vdb when Data is set (/dev/vda otherwise), a qemu.PFlash or
	// qemu.BIOS holds firmware.
	Devices []qemu.Device
	// Reboot keeps QEMU running across a guest reboot (default: a reboot
	// ends QEMU, -no-reboot).
	Reboot bool
}

// Spec is the guest Config describes, for qemu-test/qemu.
func (c Config) Spec() qemu.Spec {
	nics := make([]qemu.NIC, 0, len(c.NICs)) // non-nil: []NIC{} is no NIC
	if c.NICs == nil {
		c.NICs = DefaultNICs
	}
	for _, n := range c.NICs {
		nics = append(nics, qemu.NIC{Hub: n.Hub, MAC: n.MAC})
	}
	devs := qemu.Standard(qemu.Kernel{Kernel: c.Kernel, Initrd: c.Initrd, Append: c.Append},
		qemu.Serial{}, c.Data, nics, c.QMP)
	if c.Kernel == "" {
		devs = devs[1:] // the firmware boots
	}
	return qemu.Spec{Machine: c.Arch, Mem: c.Mem, Reboot: c.Reboot, Devices: append(devs, c.Devices...)}
}

// Args is QEMU's command line (without the binary).
func (c Config) Args() []string { return c.Spec().Args() }

// VM is a running guest.
type VM struct {
	t       testing.TB
	cmd     *exec.Cmd
	started time.Time
	ctx     context.Context
	cancel  context.CancelFunc

	cfg Config
	qmp *qmp.Client

	con     *console.Console
	exited  chan struct{} // closed when QEMU has exited
	waitErr error         // set before exited is closed
}

// Boot starts QEMU. The VM is killed at the end of the test, and if the
// test failed, the whole console is logged.
func Boot(t testing.TB, c Config) *VM {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = c.Arch.Scale(15 * time.Minute)
	}
	if c.QMP != "" {
		_ = os.Remove(c.QMP)
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	cmd := c.Spec().Command(ctx)
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	vm := &VM{t: t, cfg: c, cmd: cmd, ctx: ctx, cancel: cancel,
		con: console.New(stdin), exited: make(chan struct{})}
	cmd.Stderr = &prefixWriter{w: vm.con, prefix: "qemu: "}
	t.Logf("%s %s", c.Arch.QEMU, strings.Join(c.Args(), " "))
	vm.started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start QEMU: %v", err)
	}
	go vm.read(stdout)
	t.Cleanup(func() {
		vm.Close()
		if dir := os.Getenv("UROUTE_QEMU_CONSOLES"); dir != "" {
			// Every console kept, for reading a passing run too.
			name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
			f := filepath.Join(dir, fmt.Sprintf("%s-%s.log", name, vm.started.Format("150405.000")))
			_ = os.MkdirAll(dir, 0o755)
			_ = os.WriteFile(f, []byte(vm.Console()), 0o644)
		}
		if t.Failed() {
			t.Logf("console (%v since QEMU started):\n%s", time.Since(vm.started).Round(time.Millisecond), vm.Console())
		}
	})
	return vm
}

// prefixWriter adds QEMU's stderr to the console log, a whole line at a
// time with prefix before it: QEMU writes a message in pieces
// ("qemu-system-arm:", " warning: ", "hub 0 ..."), which must not be
// prefixed one by one.
type prefixWriter struct {
	w      io.Writer
	prefix string
	mu     sync.Mutex
	buf    []byte
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		_, _ = w.w.Write([]byte(w.prefix + string(w.buf[:i+1])))
		w.buf = w.buf[i+1:]
	}
}

func (vm *VM) read(r io.Reader) {
	_, _ = io.Copy(vm.con, r)
	err := vm.cmd.Wait()
	vm.waitErr = err
	vm.con.Close(err)
	close(vm.exited)
}

// Console is everything the guest printed so far (and QEMU's stderr),
// escape sequences removed.
func (vm *VM) Console() string { return vm.con.Text() }

// Since is the time since QEMU started.
func (vm *VM) Since() time.Duration { return time.Since(vm.started) }

// Close kills QEMU and waits for it.
func (vm *VM) Close() {
	vm.cancel()
	<-vm.exited
	if vm.qmp != nil {
		vm.qmp.Close()
	}
}

// WaitExit waits for QEMU to exit by itself (the guest powered off; with
// -no-reboot a reboot too).
func (vm *VM) WaitExit(timeout time.Duration) error {
	select {
	case <-vm.exited:
		return vm.waitErr
	case <-time.After(timeout):
		return fmt.Errorf("QEMU still running %v after it was asked to stop", timeout)
	}
}

// QMP is the VM's QMP client, dialled on first use; the VM must have been
// booted with Config.QMP.
func (vm *VM) QMP() *qmp.Client {
	vm.t.Helper()
	if vm.qmp != nil {
		return vm.qmp
	}
	if vm.cfg.QMP == "" {
		vm.t.Fatal("QMP: the VM was booted without a QMP socket")
	}
	ctx, cancel := context.WithTimeout(vm.ctx, 10*time.Second)
	defer cancel()
	var err error
	for {
		// QEMU creates the socket shortly after it starts.
		vm.qmp, err = qmp.Dial(ctx, vm.cfg.QMP)
		if err == nil {
			return vm.qmp
		}
		select {
		case <-ctx.Done():
			vm.t.Fatalf("QMP: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// Execute runs one QMP command and fails the test on an error.
func (vm *VM) Execute(cmd string, args any) json.RawMessage {
	vm.t.Helper()
	ctx, cancel := context.WithTimeout(vm.ctx, 10*time.Second)
	defer cancel()
	r, err := vm.QMP().Execute(ctx, cmd, args)
	if err != nil {
		vm.t.Fatalf("QMP %s %v: %v", cmd, args, err)
	}
	return r
}

// PowerCut ends QEMU at once (QMP quit): the guest gets no chance to
// write anything, as when a router loses power.
func (vm *VM) PowerCut() {
	vm.t.Helper()
	ctx, cancel := context.WithTimeout(vm.ctx, 10*time.Second)
	defer cancel()
	// QEMU may exit before it answers; only its exit matters.
	_, _ = vm.QMP().Execute(ctx, "quit", nil)
	if err := vm.WaitExit(10 * time.Second); err != nil && !strings.Contains(err.Error(), "exit status") {
		vm.t.Fatalf("power cut: %v", err)
	}
}

// HotplugNIC adds a virtio-net NIC with the given QMP id and MAC on its
// own hub (hub), in the empty root port rp1.
func (vm *VM) HotplugNIC(id, mac string, hub int) {
	vm.t.Helper()
	ctx, cancel := context.WithTimeout(vm.ctx, 10*time.Second)
	defer cancel()
	if err := vm.QMP().PlugNIC(ctx, hotNIC(id, mac, hub)); err != nil {
		vm.t.Fatalf("hot-plug %s: %v", id, err)
	}
}

// UnplugNIC removes a NIC added by HotplugNIC and waits until the guest
// has let it go (on arm64 virt that takes ~5 s of pciehp).
func (vm *VM) UnplugNIC(id string, timeout time.Duration) {
	vm.t.Helper()
	ctx, cancel := context.WithTimeout(vm.ctx, timeout)
	defer cancel()
	if err := vm.QMP().UnplugNIC(ctx, hotNIC(id, "", 0)); err != nil {
		vm.t.Fatalf("unplug %s: %v", id, err)
	}
}

func hotNIC(id, mac string, hub int) qmp.NIC {
	return qmp.NIC{ID: id, Netdev: id + "-net", MAC: mac, Hub: hub, Bus: qemu.HotplugPort}
}

// RunJSON runs cmd, which prints one line of JSON, and decodes that line
// into v. ifmgrd logs to the same console, so the JSON line is found
// among the output by its first character.
func (vm *VM) RunJSON(cmd string, v any, timeout time.Duration) error {
	out, status, err := vm.Run(cmd, timeout)
	if err != nil {
		return err
	}
	if status != 0 {
		return fmt.Errorf("%s: exit status %d: %s", cmd, status, out)
	}
	var errs []error
	for _, l := range strings.Split(out, "\n") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "[") && !strings.HasPrefix(l, "{") {
			continue
		}
		err := json.Unmarshal([]byte(l), v)
		if err == nil {
			return nil
		}
		errs = append(errs, err)
	}
	return fmt.Errorf("%s: no JSON line in the output (%v):\n%s", cmd, errors.Join(errs...), out)
}

// mark is the number of complete console lines so far, for WaitLine.
func (vm *VM) mark() int { return vm.con.Mark() }

// linesRange returns console lines [from, to).
func (vm *VM) linesRange(from, to int) []string { return vm.con.Lines(from, to) }

// WaitLine waits until a console line from index from on matches re and
// returns its submatches and the index after it.
func (vm *VM) WaitLine(from int, re *regexp.Regexp, timeout time.Duration) ([]string, int, error) {
	ctx, cancel := context.WithTimeout(vm.ctx, timeout)
	defer cancel()
	return vm.con.WaitLine(ctx, from, re)
}

// Use makes the VM's helpers (MustRun, Execute, ...) report to t, a
// subtest of the test that booted it; the VM lives until that test ends.
func (vm *VM) Use(t testing.TB) { vm.t = t }

// Type types s into the console as it is, for a command that does not
// return to the shell (a power-off).
func (vm *VM) Type(s string) error { return vm.con.Type(s) }

// WaitShell waits for uinit's last line and then for the shell to answer
// (console.WaitShell). It returns the time from QEMU's start to a working
// shell, and logs how long each boot phase took (see Phases).
func (vm *VM) WaitShell(timeout time.Duration) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(vm.ctx, timeout)
	defer cancel()
	err := vm.con.WaitShell(ctx)
	ready := vm.Since()
	vm.t.Logf("%s boot phases: %s", vm.cfg.Arch.Name, FormatPhases(vm.Phases(), ready))
	if err != nil {
		return 0, err
	}
	return ready, nil
}

// bootPhases are the console lines that end each phase of a boot, in
// order: the kernel's first line, u-root's init starting, each of uinit's
// steps, and ifmgrd ready to serve.
var bootPhases = []struct {
	name string
	re   *regexp.Regexp
}{
	{"first output", regexp.MustCompile(`.`)},
	{"u-root init", regexp.MustCompile(`Welcome to u-root`)},
	{"uinit mounts", regexp.MustCompile(`^uinit: mounts: `)},
	{"uinit modules", regexp.MustCompile(`^uinit: modules: `)},
	{"uinit data", regexp.MustCompile(`^uinit: data: `)},
	{"uinit ifmgrd", regexp.MustCompile(`^uinit: ifmgrd: `)},
	{"uinit console", regexp.MustCompile(`^uinit: console: `)},
	{"ifmgrd serving", regexp.MustCompile(`ifmgrd serving`)},
}

// Phase is a boot phase that ended: its end, counted from QEMU's start.
type Phase struct {
	Name string
	At   time.Duration
}

// Phases are the boot phases seen on the console so far, in order.
func (vm *VM) Phases() []Phase {
	var out []Phase
	for _, p := range bootPhases {
		if i, at := vm.con.Find(0, p.re); i >= 0 {
			out = append(out, Phase{p.name, at.Sub(vm.started)})
		}
	}
	return out
}

// FormatPhases is "name +step (at), ..." in time order, with the shell's
// first answer at ready (0: it did not answer).
func FormatPhases(ph []Phase, ready time.Duration) string {
	ph = append([]Phase(nil), ph...)
	if ready > 0 {
		ph = append(ph, Phase{"shell answers", ready})
	}
	sort.SliceStable(ph, func(i, j int) bool { return ph[i].At < ph[j].At })
	var parts []string
	var last time.Duration
	for _, p := range ph {
		parts = append(parts, fmt.Sprintf("%s +%v (%v)", p.Name, (p.At-last).Round(10*time.Millisecond), p.At.Round(10*time.Millisecond)))
		last = p.At
	}
	if ready == 0 {
		parts = append(parts, "no answer from the shell")
	}
	return strings.Join(parts, ", ")
}

// Run types cmd into the shell and returns its output and exit status
// (console.Run).
func (vm *VM) Run(cmd string, timeout time.Duration) (out string, status int, err error) {
	ctx, cancel := context.WithTimeout(vm.ctx, timeout)
	defer cancel()
	return vm.con.Run(ctx, cmd)
}

// MustRun is Run that fails the test on a timeout or a non-zero status.
func (vm *VM) MustRun(cmd string, timeout time.Duration) string {
	vm.t.Helper()
	out, status, err := vm.Run(cmd, timeout)
	if err != nil {
		vm.t.Fatal(err)
	}
	if status != 0 {
		vm.t.Fatalf("%s: exit status %d\n%s", cmd, status, out)
	}
	return out
}

// spawned is uroute-probe spawn's report.
var spawned = regexp.MustCompile(`(?m)^spawned (\d+) (\S+)$`)

// Spawn starts argv in the guest in the background, its output (stdout
// and stderr) in outfile, and returns its pid. It goes through
// "uroute-probe spawn", a foreground command that reports the pid, rather
// than typing "argv > outfile 2>&1 &": a job that did not start fails here
// with the guest's words, not later as a file that never appears. Words
// are quoted for the shell as needed (a loop is argv "sh", "-c", "...").
func (vm *VM) Spawn(outfile string, argv ...string) int {
	vm.t.Helper()
	cmd := qemu.ShellQuote(append([]string{"uroute-probe", "spawn", outfile}, argv...))
	out := vm.MustRun(cmd, vm.cfg.Arch.Scale(20*time.Second))
	m := spawned.FindStringSubmatch(out)
	if m == nil || m[2] != outfile {
		vm.t.Fatalf("%s: no \"spawned PID %s\" in the output:\n%s", cmd, outfile, out)
	}
	pid, _ := strconv.Atoi(m[1])
	return pid
}

// errorLine is a console line that reports a problem: a kernel, init or
// ifmgrd error or warning, a uinit step that did not end in "ok", a Go
// panic.
var errorLine = regexp.MustCompile(`(?i)error|fail|unknown symbol|panic|oops|call trace|segfault|warn|problem|unable|cannot|can't|invalid|denied|level=(WARN|ERROR)|^uinit: [a-z]+: (?:[^o]|o[^k])`)

// benignLines are error-looking lines of the stock Debian kernels and of
// u-root's init that a uroute boot cannot avoid, each with why it is
// harmless. Nothing else may look like an error on a clean boot.
var benignLines = []struct {
	re  *regexp.Regexp
	why string
}{
	{regexp.MustCompile(`Problem parsing in-kernel X\.509 certificate list`),
		"4kc-malta's kernel fails to parse its own built-in key list; modules are not signature-checked in the image (CONFIG_MODULE_SIG_FORCE is off)"},
	{regexp.MustCompile(`warning: hub \d+ is not connected to host network`),
		"QEMU's own stderr, not the guest's: the NICs' hubs have no host side on purpose (qemu-test/README.md)"},
	{regexp.MustCompile(`cgroup: Unknown subsys name 'hugetlb'`),
		"u-root's init mounts every cgroup v1 controller, hugetlb included, which kernels without HugeTLB (malta, armmp) lack"},
}

// ErrorLines are the console lines so far that look like errors and are
// not among benignLines: a clean boot has none.
func (vm *VM) ErrorLines() []string { return errorLines(vm.linesRange(0, vm.mark())) }

func errorLines(lines []string) []string {
	var out []string
	for _, l := range lines {
		if !errorLine.MatchString(l) {
			continue
		}
		benign := false
		for _, b := range benignLines {
			benign = benign || b.re.MatchString(l)
		}
		if !benign {
			out = append(out, l)
		}
	}
	return out
}
