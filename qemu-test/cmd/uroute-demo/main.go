// Command uroute-demo is the unattended half of scripts/demo.sh, for when no
// one is at the console (CI, "./scripts/demo.sh </dev/null"). Run from the
// repository root, it
//
//  1. runs scripts/run-qemu.sh amd64 --data FILE --qmp SOCK [ARGS...], which
//     fetches the kernel, builds the image and boots it under QEMU with two
//     virtio NICs and the data disk, the serial console on QEMU's stdio,
//     which is a pair of pipes here;
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
// Driving the console: after uinit's last line ("uinit: console: ok") it
// types "echo __ready_$?__" until the shell echoes it, as qemu-test's
// harness does. Then, once, it types a loop into gosh's line editor (see
// readLoop) that reads and runs every further line, so commands go
// through the terminal's canonical mode instead of the editor. Each
// command is followed by "; echo __done_N_$?__"; the terminal's echo of
// the line has "$?", not digits, and never matches.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
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

// enterAgainAfter: a command with no console output for this long gets
// another Enter (see demo.guest).
const enterAgainAfter = 10 * time.Second

func main() {
	data := flag.String("data", "", "data disk image (created by run-qemu.sh if missing)")
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
			fmt.Fprintf(os.Stderr, "\n===== console log (escape sequences removed) =====\n%s\n===== end of console log =====\n", d.vm.consoleText())
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
	seq         int
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
	vm, err := startVM(ctx, d.out, runQEMUArgs)
	if err != nil {
		return err
	}
	d.vm = vm
	defer vm.kill()

	// The build (or fetch) can take minutes; QEMU's start is when
	// run-qemu.sh says what it runs.
	select {
	case <-vm.qemuStarted:
	case <-vm.exited:
		return fmt.Errorf("run-qemu.sh exited before starting QEMU: %v", vm.waitErr)
	case <-ctx.Done():
		return fmt.Errorf("kernel and image not ready: %w", context.Cause(ctx))
	}
	build := time.Since(t0)
	qemuStart := time.Now()
	d.say("demo: kernel and image ready after %v; QEMU started, QMP on %s", build.Round(100*time.Millisecond), d.sock)

	bootCtx, cancel := context.WithTimeout(ctx, d.bootTimeout)
	defer cancel()
	if _, err := vm.waitLine(bootCtx, 0, regexp.MustCompile(`uinit: console: ok`)); err != nil {
		return fmt.Errorf("boot: %w", err)
	}
	if err := d.waitShell(bootCtx); err != nil {
		return err
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

// waitShell types "echo __ready_$?__" until the shell echoes it (the
// prompt comes with no newline, and what is typed before the shell reads
// the terminal may be lost), then starts the command loop (see readLoop)
// and waits for it to answer the same way.
func (d *demo) waitShell(ctx context.Context) error {
	if err := d.poke(ctx, "ready"); err != nil {
		return err
	}
	// Let the line editor settle on its new prompt before typing.
	time.Sleep(500 * time.Millisecond)
	if err := d.vm.write(readLoop + "\n"); err != nil {
		return err
	}
	return d.poke(ctx, "loop")
}

// readLoop is typed once into gosh's line editor. It reads every further
// command line from the terminal in canonical mode and runs it, so that
// the demo's commands never go through the editor (gosh uses bubbline, a
// full-screen editor on bubbletea). Seen under load with the editor: a
// command typed as the editor starts is echoed whole, then the shell never
// runs it and takes no more input.
const readLoop = `while read -r l; do eval "$l"; done`

// poke types "echo __NAME_$?__" until the shell echoes it.
func (d *demo) poke(ctx context.Context, name string) error {
	re := regexp.MustCompile(`__` + name + `_\d+__$`)
	for {
		from := d.vm.mark()
		if err := d.vm.write("echo __" + name + "_$?__\n"); err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := d.vm.waitLine(pctx, from, re)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil || d.vm.hasExited() {
			return fmt.Errorf("the console shell did not answer %s: %w", name, err)
		}
	}
}

// guest types cmd into the guest's shell and waits for it to finish. With
// show, the command is announced ("guest# cmd") and its output printed;
// without, only kernel, uinit and ifmgrd log lines are. A non-zero exit
// status is an error.
func (d *demo) guest(ctx context.Context, cmd string, show bool) (string, error) {
	d.seq++
	tag := fmt.Sprintf("__done_%d_", d.seq)
	if show {
		d.say("guest# %s", cmd)
	}
	from := d.vm.mark()
	d.vm.setQuiet(!show)
	defer d.vm.setQuiet(false)
	if err := d.vm.write(cmd + "; echo " + tag + "$?__\n"); err != nil {
		return "", err
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Not anchored at the start: output without a final newline comes
	// before the tag. The terminal's echo has "$?", not digits.
	re := regexp.MustCompile(tag + `(\d+)__$`)
	var end int
	for {
		wctx, wcancel := context.WithTimeout(cctx, enterAgainAfter)
		var err error
		end, err = d.vm.waitLine(wctx, from, re)
		wcancel()
		if err == nil {
			break
		}
		if cctx.Err() != nil || d.vm.hasExited() {
			return "", fmt.Errorf("guest# %s: %w", cmd, err)
		}
		// A safety net for lost input (seen with the line editor, before
		// readLoop: a command echoed whole, then never run). Another
		// Enter is harmless: at worst an empty line for the loop.
		if d.vm.idle() >= enterAgainAfter {
			fmt.Fprintf(os.Stderr, "uroute-demo: no answer to %q for %v, pressing Enter again\n", cmd, enterAgainAfter)
			if err := d.vm.write("\n"); err != nil {
				return "", err
			}
		}
	}
	m := re.FindStringSubmatch(d.vm.line(end - 1))
	status, _ := strconv.Atoi(m[1])
	var b strings.Builder
	for _, l := range d.vm.lines(from, end) {
		if v, ok := visible(l); ok {
			b.WriteString(v)
			b.WriteByte('\n')
		}
	}
	if status != 0 {
		return b.String(), fmt.Errorf("guest# %s: exit status %d", cmd, status)
	}
	return b.String(), nil
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

// vm is run-qemu.sh and then QEMU, its serial console on our pipes.
type vm struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   io.Writer // where visible console lines go

	qemuStarted chan struct{} // closed when run-qemu.sh starts QEMU
	exited      chan struct{} // closed when run-qemu.sh/QEMU has exited
	waitErr     error         // set before exited is closed

	mu      sync.Mutex
	raw     bytes.Buffer
	all     []string // complete console lines, escape sequences removed
	partial []byte
	typed   map[string]bool // lines typed into the console, not printed again
	quiet   bool            // print only log lines (see logLine)
	last    time.Time       // when the console last printed anything
	notify  chan struct{}   // closed and replaced on every new line
}

// startVM runs scripts/run-qemu.sh with args. Its stderr (the build's
// output, then QEMU's) is copied to ours.
func startVM(ctx context.Context, out io.Writer, args []string) (*vm, error) {
	v := &vm{out: out, qemuStarted: make(chan struct{}), exited: make(chan struct{}), notify: make(chan struct{}),
		typed: map[string]bool{}}
	v.cmd = exec.Command("./scripts/run-qemu.sh", args...)
	// Its own process group, so that a kill reaches the build or QEMU,
	// whichever runs.
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var err error
	if v.stdin, err = v.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := v.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := v.cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(out, "host$ scripts/run-qemu.sh %s\n", strings.Join(args, " "))
	if err := v.cmd.Start(); err != nil {
		return nil, err
	}
	var readers sync.WaitGroup
	readers.Add(2)
	go func() {
		defer readers.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64*1024), 1024*1024)
		started := false
		for sc.Scan() {
			l := sc.Text()
			v.mu.Lock()
			fmt.Fprintln(os.Stderr, l)
			v.raw.WriteString("stderr: " + l + "\n")
			v.mu.Unlock()
			if !started && strings.HasPrefix(l, "run-qemu: qemu-system") {
				started = true
				close(v.qemuStarted)
			}
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		defer readers.Done()
		buf := make([]byte, 4096)
		for {
			n, err := stdout.Read(buf)
			if n > 0 {
				v.add(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	go func() {
		readers.Wait()
		err := v.cmd.Wait()
		v.mu.Lock()
		v.waitErr = err
		v.mu.Unlock()
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

// kill stops run-qemu.sh's process group: SIGTERM, then SIGKILL after 5 s.
func (v *vm) kill() {
	if v.hasExited() {
		return
	}
	pgid := v.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-v.exited:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
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

// idle is the time since the console last printed anything.
func (v *vm) idle() time.Duration {
	v.mu.Lock()
	defer v.mu.Unlock()
	return time.Since(v.last)
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
	_, err := io.WriteString(v.stdin, s)
	return err
}

func (v *vm) setQuiet(q bool) {
	v.mu.Lock()
	v.quiet = q
	v.mu.Unlock()
}

// add takes console output: it splits it into lines and prints the
// visible ones.
func (v *vm) add(p []byte) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.raw.Write(p)
	v.last = time.Now()
	for _, b := range p {
		switch b {
		case '\r':
		case '\n':
			l := cleanLine(v.partial)
			v.partial = v.partial[:0]
			v.all = append(v.all, l)
			if s, ok := visible(l); ok && !v.typed[s] && (!v.quiet || logLine.MatchString(s)) {
				fmt.Fprintln(v.out, s)
			}
		default:
			v.partial = append(v.partial, b)
		}
	}
	close(v.notify)
	v.notify = make(chan struct{})
}

var (
	// ansi matches the terminal escape sequences gosh's line editor prints.
	// SeaBIOS resets the terminal with ESC c.
	ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>c])`)
	// helpLine is the line editor's key help, up to the escape sequence
	// after it; console output can follow on the same line.
	helpLine = regexp.MustCompile(`M-\? toggle key help[^\x1b]*`)
	// tags are the markers typed after commands.
	tags = regexp.MustCompile(`__(ready|loop|done_\d+)_\d+__$`)
	// logLine: kernel, uinit and ifmgrd lines, shown even for quiet
	// commands.
	logLine = regexp.MustCompile(`^(\[ *\d+\.\d+\]|time=|uinit: |init: )`)
)

// cleanLine is a console line without the line editor's help and escape
// sequences, and without trailing blanks.
func cleanLine(b []byte) string {
	s := helpLine.ReplaceAllString(string(b), "")
	return strings.TrimRight(ansi.ReplaceAllString(s, ""), " \t")
}

// visible is what of a clean console line is worth printing: not the line
// editor's redraws of the command being typed ("> ..."), nor the
// terminal's echo of a command line with a tag ("$?" in it), nor the tags.
func visible(l string) (string, bool) {
	if l == ">" || strings.HasPrefix(l, "> ") || strings.Contains(l, "_$?__") {
		return "", false
	}
	l = tags.ReplaceAllString(l, "")
	if l == "" {
		return "", false
	}
	return l, true
}

// mark is the number of complete console lines so far.
func (v *vm) mark() int {
	v.mu.Lock()
	defer v.mu.Unlock()
	return len(v.all)
}

func (v *vm) line(i int) string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.all[i]
}

func (v *vm) lines(from, to int) []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]string(nil), v.all[from:to]...)
}

// waitLine waits for a console line from index from on that matches re
// and returns the index after it.
func (v *vm) waitLine(ctx context.Context, from int, re *regexp.Regexp) (int, error) {
	for {
		v.mu.Lock()
		for ; from < len(v.all); from++ {
			if re.MatchString(v.all[from]) {
				v.mu.Unlock()
				return from + 1, nil
			}
		}
		notify := v.notify
		v.mu.Unlock()
		select {
		case <-notify:
		case <-ctx.Done():
			return 0, fmt.Errorf("no console line matching %q: %w", re, context.Cause(ctx))
		case <-v.exited:
			return 0, fmt.Errorf("QEMU exited (%v) before a console line matched %q", v.waitErr, re)
		}
	}
}

// consoleText is the whole console (and run-qemu.sh's stderr, marked),
// escape sequences and carriage returns removed.
func (v *vm) consoleText() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return strings.ReplaceAll(ansi.ReplaceAllString(v.raw.String(), ""), "\r", "")
}
