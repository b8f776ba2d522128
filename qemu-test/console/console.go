// Package console drives the serial console of a uroute guest over pipes:
// it keeps every line the guest prints and types commands into the
// console shell (u-root's gosh, built goshsmall: a plain "$ " prompt on
// the tty's canonical mode), telling a command's output and exit status
// apart from the kernel's and ifmgrd's log lines on the same console.
//
// qemu-test's harness and the unattended demo (cmd/uroute-demo) both use
// it; they start QEMU themselves and feed its stdout to Write.
package console

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Console is one guest's serial console.
type Console struct {
	in io.Writer // the guest's console input

	// OnLine, if set before output arrives, is called with every
	// complete line (escape sequences and carriage returns removed), in
	// order, from the goroutine that calls Write.
	OnLine func(string)

	mu       sync.Mutex
	raw      bytes.Buffer
	lines    []string
	at       []time.Time // when each line was complete
	partial  []byte
	notify   chan struct{} // closed and replaced on new output
	closed   chan struct{} // closed by Close
	closeErr error
	seq      int
}

// New returns a console that types into in.
func New(in io.Writer) *Console {
	return &Console{in: in, notify: make(chan struct{}), closed: make(chan struct{})}
}

// Write takes output of the guest (QEMU's stdout).
func (c *Console) Write(p []byte) (int, error) {
	now := time.Now()
	c.mu.Lock()
	c.raw.Write(p)
	var done []string
	for _, b := range p {
		switch b {
		case '\r':
		case '\n':
			l := cleanLine(c.partial)
			c.partial = c.partial[:0]
			c.lines = append(c.lines, l)
			c.at = append(c.at, now)
			done = append(done, l)
		default:
			c.partial = append(c.partial, b)
		}
	}
	close(c.notify)
	c.notify = make(chan struct{})
	onLine := c.OnLine
	c.mu.Unlock()
	if onLine != nil {
		for _, l := range done {
			onLine(l)
		}
	}
	return len(p), nil
}

// Close says that no more output will come: QEMU has exited, with err.
// Waits in progress end.
func (c *Console) Close(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
	default:
		c.closeErr = err
		close(c.closed)
	}
}

// ansi matches terminal escape sequences: CSI sequences (ESC[2K,
// ESC[?25h), charset selection and SeaBIOS's reset (ESC c).
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>c])`)

// cleanLine is a console line without escape sequences and trailing blanks.
func cleanLine(b []byte) string {
	return strings.TrimRight(ansi.ReplaceAllString(string(b), ""), " \t")
}

// Text is everything the guest printed, escape sequences and carriage
// returns removed.
func (c *Console) Text() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.ReplaceAll(ansi.ReplaceAllString(c.raw.String(), ""), "\r", "")
}

// Mark is the number of complete lines so far, a starting point for
// WaitLine and Lines.
func (c *Console) Mark() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.lines)
}

// Lines returns lines [from, to).
func (c *Console) Lines(from, to int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.lines[from:to]...)
}

// Find is the index of the first line from index from on that matches
// re, and when it was complete; -1 if there is none yet.
func (c *Console) Find(from int, re *regexp.Regexp) (int, time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := from; i < len(c.lines); i++ {
		if re.MatchString(c.lines[i]) {
			return i, c.at[i]
		}
	}
	return -1, time.Time{}
}

// WaitLine waits until a line from index from on matches re and returns
// its submatches and the index after it.
func (c *Console) WaitLine(ctx context.Context, from int, re *regexp.Regexp) ([]string, int, error) {
	for {
		c.mu.Lock()
		for ; from < len(c.lines); from++ {
			if m := re.FindStringSubmatch(c.lines[from]); m != nil {
				c.mu.Unlock()
				return m, from + 1, nil
			}
		}
		notify := c.notify
		c.mu.Unlock()
		select {
		case <-notify:
		case <-ctx.Done():
			return nil, from, fmt.Errorf("no console line matching %q: %w", re, context.Cause(ctx))
		case <-c.closed:
			return nil, from, fmt.Errorf("QEMU exited (%v) before a console line matched %q", c.closeErr, re)
		}
	}
}

// Type types s as it is.
func (c *Console) Type(s string) error {
	_, err := io.WriteString(c.in, s)
	return err
}

// WaitShell waits for uinit's last line ("uinit: console: ok"), then types
// "echo __ready_$?__" until the shell answers: its prompt comes with no
// newline, and what is typed before the shell reads the tty may be lost.
// The tty's echo of the line has "$?", not digits, and does not match.
func (c *Console) WaitShell(ctx context.Context) error {
	if _, _, err := c.WaitLine(ctx, 0, regexp.MustCompile(`uinit: console: ok`)); err != nil {
		return err
	}
	re := regexp.MustCompile(`__ready_\d+__`)
	for {
		from := c.Mark()
		if err := c.Type("echo __ready_$?__\n"); err != nil {
			return err
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, _, err := c.WaitLine(pctx, from, re)
		cancel()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("the console shell did not answer: %w", err)
		}
		select {
		case <-c.closed:
			return err
		default:
		}
	}
}

// Run types cmd into the shell, followed by "echo __done_N_$?__", and
// returns what the guest printed until then (without the tty's echo of
// the line and the shell's prompts) and cmd's exit status.
func (c *Console) Run(ctx context.Context, cmd string) (out string, status int, err error) {
	c.mu.Lock()
	c.seq++
	tag := fmt.Sprintf("__done_%d_", c.seq)
	c.mu.Unlock()
	from := c.Mark()
	sep := "; "
	if strings.HasSuffix(strings.TrimSpace(cmd), "&") {
		sep = " " // gosh: "&;" is a syntax error
	}
	if err := c.Type(cmd + sep + "echo " + tag + "$?__\n"); err != nil {
		return "", -1, err
	}
	// Not anchored: a prompt may precede the tag, and since gosh's echo
	// writes the newline separately, an ifmgrd log line can follow it on
	// the same line. The echo of the command line has "$?", not digits.
	m, end, err := c.WaitLine(ctx, from, regexp.MustCompile(tag+`(\d+)__`))
	if err != nil {
		return "", -1, fmt.Errorf("%s: %w", cmd, err)
	}
	status, _ = strconv.Atoi(m[1])
	var b strings.Builder
	for _, l := range c.Lines(from, end-1) {
		l = StripPrompt(l)
		if l == "" || strings.Contains(l, tag) {
			continue
		}
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.String(), status, nil
}

// StripPrompt removes the shell's "$ " prompts from the start of a line:
// gosh prints the prompt, without a newline, when a command ends, so it
// starts the next line.
func StripPrompt(l string) string {
	for strings.HasPrefix(l, "$ ") {
		l = l[2:]
	}
	return l
}
