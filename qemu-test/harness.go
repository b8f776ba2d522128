// Package qemutest boots uroute's image under QEMU and drives the guest's
// console shell from Go tests.
//
// The QEMU command line mirrors scripts/run-qemu.sh for amd64 (q35, TCG,
// -nodefaults, two virtio-net NICs with MACs 52:54:00:12:34:01/02 and
// romfile=, the empty pcie-root-port rp1), except that the caller picks the
// hub of each NIC: the VLAN test puts both on one hub, which the script
// cannot do. The serial console is QEMU's stdio, on pipes: the harness
// keeps everything the guest prints (VM.Console) and types commands into
// it (VM.Run).
package qemutest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// RepoRoot is the module root (the directory above qemu-test).
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Dir(filepath.Dir(file))
}

// CacheDir is $UROUTE_CACHE or ~/.cache/uroute, as in scripts/run-qemu.sh.
func CacheDir() string {
	if d := os.Getenv("UROUTE_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "uroute")
}

// Requirements skips the test unless UROUTE_QEMU=1, qemu-system-x86_64 is
// installed and the cached amd64 kernel and its modules exist. It returns
// the kernel's path.
func Requirements(t testing.TB) (kernel string) {
	t.Helper()
	if os.Getenv("UROUTE_QEMU") != "1" {
		t.Skip("QEMU boot test: set UROUTE_QEMU=1 to run it (needs qemu-system-x86_64 and the cached kernel; ~1 min)")
	}
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		t.Skip("qemu-system-x86_64 not installed (apt-get install --no-install-recommends qemu-system-x86)")
	}
	kdir := filepath.Join(CacheDir(), "kernel-amd64")
	for _, f := range []string{"vmlinuz", "modules/load-order"} {
		if _, err := os.Stat(filepath.Join(kdir, f)); err != nil {
			t.Skipf("cached kernel missing (%v); run scripts/fetch-kernel.sh amd64 %s", err, kdir)
		}
	}
	return filepath.Join(kdir, "vmlinuz")
}

// BuildImage builds the amd64 image with the board profile at profile
// (scripts/build-image.sh with BOARD_FILE=profile and the cached kernel's
// modules) into the cache as image-amd64-NAME.cpio, NAME being the
// profile's base name. With UROUTE_QEMU_REUSE=1 an existing one is used.
func BuildImage(t testing.TB, profile string) string {
	t.Helper()
	name := strings.TrimSuffix(filepath.Base(profile), ".toml")
	out := filepath.Join(CacheDir(), "image-amd64-"+name+".cpio")
	if os.Getenv("UROUTE_QEMU_REUSE") == "1" {
		if _, err := os.Stat(out); err == nil {
			t.Logf("reusing %s", out)
			return out
		}
	}
	start := time.Now()
	cmd := exec.Command(filepath.Join(RepoRoot(), "scripts", "build-image.sh"), "amd64", out)
	cmd.Env = append(os.Environ(),
		"BOARD_FILE="+profile,
		"MODULES_DIR="+filepath.Join(CacheDir(), "kernel-amd64", "modules"))
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build-image.sh: %v\n%s", err, b)
	}
	t.Logf("built %s in %v", out, time.Since(start).Round(100*time.Millisecond))
	return out
}

// Config says how to boot.
type Config struct {
	Kernel, Initrd string
	Hubs           [2]int        // hub id of NIC 0 and NIC 1 (run-qemu.sh: 0, 1)
	Mem            int           // MB, default 512
	Timeout        time.Duration // QEMU is killed after it; default 120 s
	Append         string        // extra kernel parameters
}

// Args is QEMU's command line (without the binary), mirroring
// scripts/run-qemu.sh amd64 with no data disk and no QMP.
func (c Config) Args() []string {
	mem := c.Mem
	if mem == 0 {
		mem = 512
	}
	cmdline := "console=ttyS0 quiet"
	if c.Append != "" {
		cmdline += " " + c.Append
	}
	args := []string{
		"-M", "q35", "-accel", "tcg", "-m", strconv.Itoa(mem),
		"-nodefaults", "-nographic", "-no-reboot",
		"-kernel", c.Kernel, "-initrd", c.Initrd, "-append", cmdline,
		"-serial", "stdio",
	}
	for i, hub := range c.Hubs {
		args = append(args,
			"-netdev", fmt.Sprintf("hubport,id=n%d,hubid=%d", i, hub),
			"-device", fmt.Sprintf("virtio-net-pci,netdev=n%d,mac=52:54:00:12:34:0%d,romfile=", i, i+1))
	}
	return append(args, "-device", "pcie-root-port,id=rp1,slot=1,chassis=1")
}

// VM is a running guest.
type VM struct {
	t       testing.TB
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	started time.Time
	ctx     context.Context
	cancel  context.CancelFunc

	mu      sync.Mutex
	console bytes.Buffer
	lines   []string      // complete lines, \r removed
	partial []byte        // the line being received
	notify  chan struct{} // closed and replaced on new output
	exited  chan struct{} // closed when QEMU has exited
	waitErr error
	seq     int
}

// Boot starts QEMU. The VM is killed at the end of the test, and if the
// test failed, the whole console is logged.
func Boot(t testing.TB, c Config) *VM {
	t.Helper()
	if c.Timeout == 0 {
		c.Timeout = 120 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.Timeout)
	cmd := exec.CommandContext(ctx, "qemu-system-x86_64", c.Args()...)
	cmd.WaitDelay = 5 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	vm := &VM{t: t, cmd: cmd, stdin: stdin, ctx: ctx, cancel: cancel,
		notify: make(chan struct{}), exited: make(chan struct{})}
	cmd.Stderr = &prefixWriter{vm: vm, prefix: "qemu: "}
	t.Logf("qemu-system-x86_64 %s", strings.Join(c.Args(), " "))
	vm.started = time.Now()
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatalf("start QEMU: %v", err)
	}
	go vm.read(stdout)
	t.Cleanup(func() {
		vm.Close()
		if t.Failed() {
			// Escape sequences of gosh's line editor removed.
			t.Logf("console (%v since QEMU started):\n%s", time.Since(vm.started).Round(time.Millisecond),
				strings.ReplaceAll(ansi.ReplaceAllString(vm.Console(), ""), "\r", ""))
		}
	})
	return vm
}

// prefixWriter adds QEMU's stderr to the console log.
type prefixWriter struct {
	vm     *VM
	prefix string
}

func (w *prefixWriter) Write(p []byte) (int, error) {
	w.vm.add([]byte(w.prefix + string(p)))
	return len(p), nil
}

func (vm *VM) read(r io.Reader) {
	buf := make([]byte, 4096)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			vm.add(buf[:n])
		}
		if err != nil {
			break
		}
	}
	err := vm.cmd.Wait()
	vm.mu.Lock()
	vm.waitErr = err
	vm.mu.Unlock()
	close(vm.exited)
}

func (vm *VM) add(p []byte) {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	vm.console.Write(p)
	for _, b := range p {
		switch b {
		case '\r':
		case '\n':
			vm.lines = append(vm.lines, cleanLine(vm.partial))
			vm.partial = vm.partial[:0]
		default:
			vm.partial = append(vm.partial, b)
		}
	}
	close(vm.notify)
	vm.notify = make(chan struct{})
}

// ansi matches the terminal escape sequences that gosh's line editor (a
// full-screen TUI) prints: CSI sequences such as ESC[2K, ESC[?25h.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>])`)

// cleanLine is a console line without escape sequences and trailing blanks.
func cleanLine(b []byte) string {
	return strings.TrimRight(ansi.ReplaceAllString(string(b), ""), " \t")
}

// Console is everything the guest printed so far (and QEMU's stderr).
func (vm *VM) Console() string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.console.String()
}

// Since is the time since QEMU started.
func (vm *VM) Since() time.Duration { return time.Since(vm.started) }

// Close kills QEMU and waits for it.
func (vm *VM) Close() {
	vm.cancel()
	<-vm.exited
}

// mark is the number of complete console lines so far, for WaitLine.
func (vm *VM) mark() int {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return len(vm.lines)
}

// WaitLine waits until a console line from index from on matches re and
// returns its submatches and the index after it.
func (vm *VM) WaitLine(from int, re *regexp.Regexp, timeout time.Duration) ([]string, int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		vm.mu.Lock()
		for ; from < len(vm.lines); from++ {
			if m := re.FindStringSubmatch(vm.lines[from]); m != nil {
				vm.mu.Unlock()
				return m, from + 1, nil
			}
		}
		notify := vm.notify
		vm.mu.Unlock()
		select {
		case <-notify:
		case <-deadline.C:
			return nil, from, fmt.Errorf("no console line matching %q within %v", re, timeout)
		case <-vm.exited:
			return nil, from, fmt.Errorf("QEMU exited (%v) before a console line matched %q", vm.waitErr, re)
		}
	}
}

// lines returns console lines [from, to).
func (vm *VM) linesRange(from, to int) []string {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return append([]string(nil), vm.lines[from:to]...)
}

func (vm *VM) write(s string) error {
	_, err := io.WriteString(vm.stdin, s)
	return err
}

// WaitShell waits for uinit's last line and then for the shell to answer an
// echo. It returns the time from QEMU's start to a working shell.
func (vm *VM) WaitShell(timeout time.Duration) (time.Duration, error) {
	deadline := time.Now().Add(timeout)
	if _, _, err := vm.WaitLine(0, regexp.MustCompile(`uinit: console: ok`), timeout); err != nil {
		return 0, err
	}
	// The shell's prompt comes with no newline; poke it until it echoes.
	// "$?" keeps the editor's echo of the command from matching.
	re := regexp.MustCompile(`__ready_\d+__$`)
	for time.Now().Before(deadline) {
		from := vm.mark()
		if err := vm.write("echo __ready_$?__\n"); err != nil {
			return 0, err
		}
		if _, _, err := vm.WaitLine(from, re, 3*time.Second); err == nil {
			return vm.Since(), nil
		}
	}
	return 0, errors.New("the console shell did not answer")
}

// Run types cmd into the shell and returns what the guest printed until
// the command finished, and its exit status. The shell echoes the command
// line itself (gosh has a full-screen line editor that redraws it on
// every key); those lines are dropped.
func (vm *VM) Run(cmd string, timeout time.Duration) (out string, status int, err error) {
	vm.seq++
	tag := fmt.Sprintf("__done_%d_", vm.seq)
	from := vm.mark()
	sep := "; "
	if strings.HasSuffix(strings.TrimSpace(cmd), "&") {
		sep = " " // gosh: "&;" is a syntax error
	}
	if err := vm.write(cmd + sep + "echo " + tag + "$?__\n"); err != nil {
		return "", -1, err
	}
	// Not anchored at the start: the output may follow the editor's help
	// line on the same line. The editor's echo has "$?", not digits.
	m, end, err := vm.WaitLine(from, regexp.MustCompile(tag+`(\d+)__$`), timeout)
	if err != nil {
		return "", -1, fmt.Errorf("%s: %w", cmd, err)
	}
	status, _ = strconv.Atoi(m[1])
	var b strings.Builder
	for _, l := range vm.linesRange(from, end-1) {
		// The line editor's redraws of the command line (prompt "> ")
		// and its help line are no output.
		if strings.Contains(l, "toggle key help") {
			// Output (or the next redraw) can be glued to the help
			// line, after its "…".
			i := strings.LastIndex(l, "…")
			if i < 0 {
				continue
			}
			l = l[i+len("…"):]
		}
		if l == "" || strings.Contains(l, tag) || strings.HasPrefix(l, "> ") || l == ">" {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String(), status, nil
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
