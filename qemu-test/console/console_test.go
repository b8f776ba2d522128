package console

import (
	"context"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

// fakeShell answers typed lines the way the guest's console does: the
// tty echoes each line, then the command's output follows; ifmgrd's log
// can land anywhere, even right behind a tag.
func fakeShell(t *testing.T, c *Console, r io.Reader, answer func(line string) string) {
	t.Helper()
	go func() {
		buf := make([]byte, 4096)
		var pending string
		for {
			n, err := r.Read(buf)
			if err != nil {
				return
			}
			pending += string(buf[:n])
			for {
				i := strings.IndexByte(pending, '\n')
				if i < 0 {
					break
				}
				line := pending[:i]
				pending = pending[i+1:]
				c.Write([]byte("$ " + line + "\r\n" + answer(line)))
			}
		}
	}()
}

func TestRun(t *testing.T) {
	r, w := io.Pipe()
	c := New(w)
	var got []string
	c.OnLine = func(l string) { got = append(got, l) }
	fakeShell(t, c, r, func(line string) string {
		switch {
		case strings.HasPrefix(line, "echo __ready_"):
			return "__ready_0__\r\n"
		case strings.HasPrefix(line, "ifctl list"):
			// Output, an escape sequence, a log line glued behind the
			// tag (gosh writes echo's newline apart).
			return "\x1b[0mbridge0  up\r\n__done_1_0__time=... msg=created\r\n"
		case strings.HasPrefix(line, "false"):
			return "__done_2_1__\r\n"
		}
		return ""
	})
	c.Write([]byte("uinit: console: ok\r\n"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.WaitShell(ctx); err != nil {
		t.Fatal(err)
	}
	out, status, err := c.Run(ctx, "ifctl list")
	if err != nil || status != 0 || out != "bridge0  up\n" {
		t.Errorf("Run(ifctl list) = %q, %d, %v; want \"bridge0  up\\n\", 0, nil", out, status, err)
	}
	out, status, err = c.Run(ctx, "false")
	if err != nil || status != 1 || out != "" {
		t.Errorf("Run(false) = %q, %d, %v; want \"\", 1, nil", out, status, err)
	}
	if len(got) == 0 || got[0] != "uinit: console: ok" {
		t.Errorf("OnLine saw %q", got)
	}
	if strings.Contains(c.Text(), "\x1b") || strings.Contains(c.Text(), "\r") {
		t.Errorf("Text keeps escape sequences or CRs: %q", c.Text())
	}
}

func TestWaitEndsOnClose(t *testing.T) {
	c := New(io.Discard)
	go func() {
		time.Sleep(10 * time.Millisecond)
		c.Close(io.ErrUnexpectedEOF)
	}()
	_, _, err := c.WaitLine(context.Background(), 0, regexp.MustCompile(`never`))
	if err == nil || !strings.Contains(err.Error(), "QEMU exited") {
		t.Fatalf("WaitLine after Close: %v", err)
	}
}

func TestStripPrompt(t *testing.T) {
	for in, want := range map[string]string{"$ $ x": "x", "x $ y": "x $ y", "$": "$", "  indented": "  indented"} {
		if got := StripPrompt(in); got != want {
			t.Errorf("StripPrompt(%q) = %q, want %q", in, got, want)
		}
	}
}
