// Command uroute-demo is the unattended half of scripts/demo.sh, for when no
// one is at the console (CI, "./scripts/demo.sh </dev/null"). Run from the
// repository root, it
//
//  1. does what scripts/run-qemu.sh amd64 --data FILE --qmp SOCK [ARGS...]
//     does, through the same code (qemu-test/qemu): fetches the kernel,
//     builds the image and boots it under QEMU with two virtio NICs and the
//     data disk, the serial console on QEMU's stdio, which is a pair of
//     pipes here;
//  2. waits for the console shell and for ifmgrd to have brought up the
//     board profile's bridges and VLANs (ifctl list, every second);
//  3. runs ifctl list, ifctl status and ip -d link in the guest;
//  4. runs scripts/hotplug.sh add on the host (a third NIC, over QMP), waits
//     until ifmgrd has brought up the profile's VLANs on it, shows ifctl
//     list and the new eth2, then runs scripts/hotplug.sh del and waits
//     until they are gone, and shows ifctl list, ifctl status and ip link;
//  5. powers the guest off (uroute-uinit shutdown: ifmgrd stopped, /data
//     unmounted, then reboot(2)) and waits for QEMU to exit.
//
// Console lines are printed as they arrive, without the line editor's
// redraws and the echo of what was typed; "guest# CMD" and "host$ CMD"
// lines say what was typed or run. Exit status 0 when every step worked;
// otherwise 1, with the whole console on stderr.
//
// Usage:
//
//	uroute-demo -data FILE [-qmp SOCK] [-boot-timeout D] [-timeout D] [-- RUN-QEMU-ARGS...]
//
// The console is driven by qemu-test/console: after uinit's last line it
// types "echo __ready_$?__" until the shell answers, then each command
// followed by "; echo __done_N_$?__".
package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/uroute/uroute/qemu-test/console"
	"github.com/uroute/uroute/qemu-test/qemu"
)

// profileLinks are the identities (as ifctl list shows them) of the links
// that the qemu-amd64 profile makes on run-qemu.sh's two NICs, and
// hotplugLinks those it makes on the NIC scripts/hotplug.sh adds (MAC
// 52:54:00:12:34:03).
var (
	profileLinks = []string{
		"rule=bridge/guest", "rule=bridge/lan",
		"rule=port/lan,mac=52:54:00:12:34:01,vid=10", "rule=port/lan,mac=52:54:00:12:34:01,vid=20",
		"rule=port/lan,mac=52:54:00:12:34:02,vid=10", "rule=port/lan,mac=52:54:00:12:34:02,vid=20",
	}
	hotplugLinks = []string{
		"rule=port/lan,mac=52:54:00:12:34:03,vid=10", "rule=port/lan,mac=52:54:00:12:34:03,vid=20",
	}
)

// states maps identity to state in ifctl list's output (name kind unit
// identity state).
func states(list string) map[string]string {
	m := map[string]string{}
	for _, l := range strings.Split(list, "\n") {
		if f := strings.Fields(l); len(f) == 5 {
			m[f[3]] = f[4]
		}
	}
	return m
}

func allUp(list string, ids []string) bool {
	st := states(list)
	for _, id := range ids {
		if st[id] != "up" {
			return false
		}
	}
	return true
}

func noneUp(list string, ids []string) bool {
	st := states(list)
	for _, id := range ids {
		if st[id] == "up" {
			return false
		}
	}
	return true
}

// shutdown is the router's clean power-off; QEMU (-no-reboot) exits.
const shutdown = "uroute-uinit shutdown"

func main() {
	data := flag.String("data", "", "data disk image (created if missing, as run-qemu.sh does)")
	qmpDefault := os.Getenv("UROUTE_DEMO_QMP")
	if qmpDefault == "" {
		qmpDefault = "/tmp/uroute-demo.qmp"
	}
	sock := flag.String("qmp", qmpDefault, "QMP socket for QEMU ($UROUTE_DEMO_QMP)")
	bootTimeout := flag.Duration("boot-timeout", 5*time.Minute, "from QEMU's start to the profile's links in the guest")
	timeout := flag.Duration("timeout", 30*time.Minute, "for everything, the kernel fetch and image build included")
	flag.Parse()
	if *data == "" {
		fmt.Fprintln(os.Stderr, "uroute-demo: -data FILE is required")
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()

	d := &demo{out: os.Stdout, sock: *sock, bootTimeout: *bootTimeout}
	start := time.Now()
	err := d.run(ctx, append([]string{"amd64", "--data", *data, "--qmp", *sock}, flag.Args()...))
	if err != nil {
		d.say("demo: FAILED after %v: %v", time.Since(start).Round(time.Second), err)
		if d.vm != nil {
			fmt.Fprintf(os.Stderr, "\n===== console log (escape sequences removed) =====\n%s\n===== end of console log =====\n", d.vm.con.Text())
		}
		fmt.Fprintf(os.Stderr, "uroute-demo: %v\n", err)
		os.Exit(1)
	}
}

// demo is one unattended run.
type demo struct {
	out         io.Writer
	sock        string
	bootTimeout time.Duration
	vm          *vm
}

// say prints a line of the demo's own, in order with the console's.
func (d *demo) say(format string, a ...any) {
	if d.vm != nil {
		d.vm.mu.Lock()
		defer d.vm.mu.Unlock()
	}
	fmt.Fprintf(d.out, format+"\n", a...)
}

func (d *demo) run(ctx context.Context, runQEMUArgs []string) error {
	t0 := time.Now()
	opts, err := qemu.ParseOptions(runQEMUArgs)
	if err != nil {
		return fmt.Errorf("run-qemu options %q: %w", runQEMUArgs, err)
	}
	fmt.Fprintf(d.out, "demo: booting as scripts/run-qemu.sh %s would\n", strings.Join(runQEMUArgs, " "))
	// The build (or fetch) can take minutes; its output goes to stderr.
	if err := opts.Prepare(ctx, ".", os.Stderr); err != nil {
		return fmt.Errorf("kernel and image not ready: %w", err)
	}
	vm, err := startVM(ctx, d.out, opts.Spec())
	if err != nil {
		return err
	}
	d.vm = vm
	defer vm.kill()
	build := time.Since(t0)
	qemuStart := time.Now()
	d.say("demo: kernel and image ready after %v; QEMU started, QMP on %s", build.Round(100*time.Millisecond), d.sock)

	bootCtx, cancel := context.WithTimeout(ctx, d.bootTimeout)
	defer cancel()
	if err := vm.con.WaitShell(bootCtx); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	shell := time.Since(qemuStart)
	d.say("demo: console shell answers %v after QEMU started", shell.Round(100*time.Millisecond))

	// ifmgrd makes the profile's links right after it starts, which can
	// be just after the shell comes up. qemu-amd64: bridges lan and
	// guest, VLANs 10 and 20 on each of the two NICs.
	d.say("demo: waiting for ifmgrd to bring up the profile's 2 bridges and 4 VLANs")
	var list string
	if err := d.poll(bootCtx, "ifctl list", func(out string) bool {
		list = out
		return allUp(out, profileLinks)
	}); err != nil {
		return fmt.Errorf("profile links: %w", err)
	}
	ready := time.Since(qemuStart)
	cancel()
	if strings.Contains(list, " absent") {
		d.say("demo: the data disk keeps ifmgrd's DB from earlier demos; units of NICs not plugged in now are listed as absent")
	}

	for _, c := range []string{"ifctl list", "ifctl status", "ip -d link"} {
		if _, err := d.guest(ctx, c, true); err != nil {
			return err
		}
	}

	d.say("\ndemo: hot-plug a third NIC over QMP (its own QEMU hub, PCIe root port rp1)")
	tPlug := time.Now()
	if err := d.host(ctx, "scripts/hotplug.sh", "add"); err != nil {
		return err
	}
	if err := d.poll(ctx, "ifctl list", func(out string) bool {
		return allUp(out, hotplugLinks)
	}); err != nil {
		return fmt.Errorf("VLANs on the hot-plugged NIC: %w", err)
	}
	plugged := time.Since(tPlug)
	d.say("demo: ifmgrd brought up the hot-plugged NIC's 2 VLANs %v after hotplug.sh add started", plugged.Round(100*time.Millisecond))
	for _, c := range []string{"ifctl list", "ip -d link show eth2"} {
		if _, err := d.guest(ctx, c, true); err != nil {
			return err
		}
	}

	d.say("\ndemo: unplug it again")
	tUnplug := time.Now()
	if err := d.host(ctx, "scripts/hotplug.sh", "del"); err != nil {
		return err
	}
	// The kernel deletes a VLAN with its parent; ifmgrd notices and
	// keeps the units reserved for the NIC's return.
	if err := d.poll(ctx, "ifctl list", func(out string) bool {
		return noneUp(out, hotplugLinks)
	}); err != nil {
		return fmt.Errorf("cleanup after unplug: %w", err)
	}
	unplugged := time.Since(tUnplug)
	d.say("demo: the hot-plugged NIC's VLANs are gone %v after hotplug.sh del started; their units stay reserved for it (absent)",
		unplugged.Round(100*time.Millisecond))
	for _, c := range []string{"ifctl list", "ifctl status", "ip link"} {
		if _, err := d.guest(ctx, c, true); err != nil {
			return err
		}
	}

	d.say("\ndemo: power off cleanly (ifmgrd stopped, /data unmounted)")
	tOff := time.Now()
	d.say("guest# %s", shutdown)
	if err := vm.write(shutdown + "\n"); err != nil {
		return err
	}
	offCtx, offCancel := context.WithTimeout(ctx, 2*time.Minute)
	defer offCancel()
	select {
	case <-vm.exited:
	case <-offCtx.Done():
		return fmt.Errorf("QEMU still running %v after poweroff", time.Since(tOff).Round(time.Second))
	}
	if vm.waitErr != nil {
		return fmt.Errorf("QEMU: %v", vm.waitErr)
	}
	d.say("demo: QEMU exited with status 0, %v after %s", time.Since(tOff).Round(100*time.Millisecond), shutdown)
	d.say("demo: ok. kernel+image %v, shell %v and profile links %v after QEMU start, hot-plug to VLANs %v, unplug to cleanup %v, total %v",
		build.Round(100*time.Millisecond), shell.Round(100*time.Millisecond), ready.Round(100*time.Millisecond),
		plugged.Round(100*time.Millisecond), unplugged.Round(100*time.Millisecond), time.Since(t0).Round(100*time.Millisecond))
	return nil
}

// guest types cmd into the guest's shell and waits for it to finish. With
// show, the command is announced ("guest# cmd") and its output printed;
// without, only kernel, uinit and ifmgrd log lines are. A non-zero exit
// status is an error.
func (d *demo) guest(ctx context.Context, cmd string, show bool) (string, error) {
	if show {
		d.say("guest# %s", cmd)
	}
	d.vm.setQuiet(!show)
	defer d.vm.setQuiet(false)
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	out, status, err := d.vm.con.Run(cctx, cmd)
	if err != nil {
		return "", fmt.Errorf("guest# %w", err)
	}
	if status != 0 {
		return out, fmt.Errorf("guest# %s: exit status %d", cmd, status)
	}
	return out, nil
}

// poll runs cmd quietly every second until done accepts its output.
func (d *demo) poll(ctx context.Context, cmd string, done func(string) bool) error {
	var last string
	for {
		out, err := d.guest(ctx, cmd, false)
		if err == nil && done(out) {
			return nil
		}
		last = out
		if err != nil {
			last = err.Error() + "\n" + out
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never showed it (%w); last output:\n%s", cmd, context.Cause(ctx), last)
		case <-time.After(time.Second):
		}
	}
}

// host runs a command on the host, its output with the console's.
func (d *demo) host(ctx context.Context, name string, args ...string) error {
	d.say("host$ %s %s", name, strings.Join(args, " "))
	cmd := exec.CommandContext(ctx, "./"+name, args...)
	cmd.Env = append(os.Environ(), "UROUTE_DEMO_QMP="+d.sock)
	w := &lineWriter{say: func(l string) { d.say("%s", l) }}
	cmd.Stdout, cmd.Stderr = w, w
	err := cmd.Run()
	w.flush()
	if err != nil {
		return fmt.Errorf("%s %s: %w", name, strings.Join(args, " "), err)
	}
	return nil
}

// lineWriter hands complete lines to say.
type lineWriter struct {
	mu  sync.Mutex
	buf []byte
	say func(string)
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		w.say(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
}

func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.say(string(w.buf))
		w.buf = nil
	}
}

// vm is QEMU, its serial console on our pipes.
type vm struct {
	cmd *exec.Cmd
	con *console.Console
	out io.Writer // where visible console lines go

	exited  chan struct{} // closed when QEMU has exited
	waitErr error         // set before exited is closed

	mu    sync.Mutex      // also orders demo.say with console lines
	typed map[string]bool // lines typed into the console, not printed again
	quiet bool            // print only log lines (see logLine)
}

// startVM starts QEMU for spec. Its stderr is copied to ours.
func startVM(ctx context.Context, out io.Writer, spec qemu.Spec) (*vm, error) {
	v := &vm{out: out, exited: make(chan struct{}), typed: map[string]bool{}}
	v.cmd = spec.Command(context.WithoutCancel(ctx)) // kill() ends it, SIGTERM first
	stdin, err := v.cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	v.con = console.New(stdin)
	v.con.OnLine = v.show
	stdout, err := v.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	v.cmd.Stderr = os.Stderr
	fmt.Fprintf(os.Stderr, "run-qemu: %s\n", spec)
	if err := v.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_, _ = io.Copy(v.con, stdout)
		err := v.cmd.Wait()
		v.waitErr = err
		v.con.Close(err)
		close(v.exited)
	}()
	// Stop it when the demo is cancelled (timeout, Ctrl-C).
	go func() {
		select {
		case <-ctx.Done():
			v.kill()
		case <-v.exited:
		}
	}()
	return v, nil
}

// kill stops QEMU: SIGTERM, then SIGKILL after 5 s.
func (v *vm) kill() {
	if v.hasExited() {
		return
	}
	_ = v.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-v.exited:
	case <-time.After(5 * time.Second):
		_ = v.cmd.Process.Kill()
		<-v.exited
	}
}

func (v *vm) hasExited() bool {
	select {
	case <-v.exited:
		return true
	default:
		return false
	}
}

// write types s on the console. The terminal's echo of its lines (in
// canonical mode) is not printed.
func (v *vm) write(s string) error {
	v.mu.Lock()
	for _, l := range strings.Split(s, "\n") {
		if l != "" {
			v.typed[l] = true
		}
	}
	v.mu.Unlock()
	return v.con.Type(s)
}

func (v *vm) setQuiet(q bool) {
	v.mu.Lock()
	v.quiet = q
	v.mu.Unlock()
}

// show prints a console line if it is visible, not the echo of a line we
// typed, and, while a command runs quietly, a log line.
func (v *vm) show(l string) {
	v.mu.Lock()
	defer v.mu.Unlock()
	if s, ok := visible(l); ok && !v.typed[s] && (!v.quiet || logLine.MatchString(s)) {
		fmt.Fprintln(v.out, s)
	}
}

var (
	// tags are the markers typed after commands; gosh's echo writes its
	// newline apart, so a log line can follow one.
	tags = regexp.MustCompile(`__(ready|done_\d+)_\d+__`)
	// logLine: kernel, uinit and ifmgrd lines, shown even for quiet
	// commands.
	logLine = regexp.MustCompile(`^(\[ *\d+\.\d+\]|time=|uinit: |init: )`)
)

// visible is what of a console line is worth printing: without the
// shell's prompt and the tags, and not the terminal's echo of a command
// line with a tag ("$?" in it).
func visible(l string) (string, bool) {
	l = console.StripPrompt(l)
	if strings.Contains(l, "_$?__") {
		return "", false
	}
	l = tags.ReplaceAllString(l, "")
	if l == "" {
		return "", false
	}
	return l, true
}
