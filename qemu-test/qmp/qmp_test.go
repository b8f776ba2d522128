package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fakeQEMU is a QMP server on a unix socket in t.TempDir. It answers:
//
//	qmp_capabilities  {}
//	query-status      {"status":"running","running":true}
//	fail              error GenericError "it failed"
//	emit              event FOO {"n":1}, then event BAR {"n":2}, then {}
//	emit-later        {}, then after 50 ms event LATE {"n":3}
//	hold              nothing until the next command, then both, newest first
//	silent            nothing, ever
//	quit              {}, event SHUTDOWN, then closes the connection
//
// and anything else with CommandNotFound.
type fakeQEMU struct {
	path string
	ln   net.Listener
	wg   sync.WaitGroup

	mu   sync.Mutex
	seen []string // commands received, in order
}

func newFake(t *testing.T) *fakeQEMU {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmp") // t.TempDir can exceed sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeQEMU{path: filepath.Join(dir, "qmp.sock")}
	f.ln, err = net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	f.wg.Add(1)
	go f.serve()
	t.Cleanup(f.stop)
	return f
}

func (f *fakeQEMU) stop() {
	f.ln.Close()
	f.wg.Wait()
}

func (f *fakeQEMU) serve() {
	defer f.wg.Done()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		c, err := f.ln.Accept()
		if err != nil {
			return
		}
		conns = append(conns, c)
		f.wg.Add(1)
		go func() {
			defer f.wg.Done()
			defer c.Close()
			f.handle(c)
		}()
	}
}

func (f *fakeQEMU) handle(c net.Conn) {
	enc := json.NewEncoder(c)
	dec := json.NewDecoder(c)
	var wmu sync.Mutex
	send := func(v any) {
		wmu.Lock()
		defer wmu.Unlock()
		enc.Encode(v)
	}
	type obj = map[string]any
	send(obj{"QMP": obj{"version": obj{"qemu": obj{"major": 7, "minor": 2, "micro": 0}}, "capabilities": []string{"oob"}}})

	var held *struct{ id json.RawMessage }
	var laters sync.WaitGroup
	defer laters.Wait()
	for {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if err := dec.Decode(&req); err != nil {
			return
		}
		f.mu.Lock()
		f.seen = append(f.seen, req.Execute)
		f.mu.Unlock()
		ret := func(v any) { send(obj{"return": v, "id": req.ID}) }
		switch req.Execute {
		case "qmp_capabilities":
			ret(obj{})
		case "query-status":
			ret(obj{"status": "running", "running": true})
		case "fail":
			send(obj{"error": obj{"class": "GenericError", "desc": "it failed"}, "id": req.ID})
		case "emit":
			send(obj{"event": "FOO", "data": obj{"n": 1}, "timestamp": obj{"seconds": 1, "microseconds": 0}})
			send(obj{"event": "BAR", "data": obj{"n": 2}, "timestamp": obj{"seconds": 1, "microseconds": 1}})
			ret(obj{})
		case "emit-later":
			ret(obj{})
			laters.Add(1)
			go func() {
				defer laters.Done()
				time.Sleep(50 * time.Millisecond)
				send(obj{"event": "LATE", "data": obj{"n": 3}})
			}()
		case "hold":
			held = &struct{ id json.RawMessage }{req.ID}
			continue
		case "silent":
		case "quit":
			ret(obj{})
			send(obj{"event": "SHUTDOWN", "data": obj{"guest": false, "reason": "host-qmp-quit"}})
			return
		default:
			send(obj{"error": obj{"class": "CommandNotFound", "desc": "The command " + req.Execute + " has not been found"}, "id": req.ID})
		}
		if held != nil && req.Execute != "hold" {
			send(obj{"return": obj{"held": true}, "id": held.id})
			held = nil
		}
	}
}

func (f *fakeQEMU) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func dial(t *testing.T, f *fakeQEMU) *Client {
	t.Helper()
	c, err := Dial(ctxT(t), f.path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestDialAndExecute(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake(t)
	c := dial(t, f)
	if g := string(c.Greeting()); !json.Valid(c.Greeting()) || g == "" {
		t.Fatalf("greeting %q", g)
	}
	ret, err := c.Execute(ctxT(t), "query-status", nil)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Status  string
		Running bool
	}
	if err := json.Unmarshal(ret, &st); err != nil || st.Status != "running" || !st.Running {
		t.Fatalf("query-status = %s (%v)", ret, err)
	}
	if got := f.commands(); len(got) != 2 || got[0] != "qmp_capabilities" || got[1] != "query-status" {
		t.Fatalf("server saw %q", got)
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := c.Execute(ctxT(t), "query-status", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Execute after Close: %v", err)
	}
	f.stop()
}

func TestErrorReply(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake(t)
	c := dial(t, f)
	_, err := c.Execute(ctxT(t), "fail", map[string]any{"x": 1})
	var qe *Error
	if !errors.As(err, &qe) || qe.Desc != "it failed" || qe.Class != "GenericError" || qe.Command != "fail" {
		t.Fatalf("err = %#v", err)
	}
	if err.Error() != "qmp: fail: it failed" {
		t.Fatalf("message %q", err)
	}
	_, err = c.Execute(ctxT(t), "nonsense", nil)
	if !errors.As(err, &qe) || qe.Class != "CommandNotFound" {
		t.Fatalf("err = %v", err)
	}
	// The connection is still usable after an error reply.
	if _, err := c.Execute(ctxT(t), "query-status", nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	f.stop()
}

func TestEventBeforeWait(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake(t)
	c := dial(t, f)
	// The events precede the reply on the wire, so both are buffered
	// by the time Execute returns.
	if _, err := c.Execute(ctxT(t), "emit", nil); err != nil {
		t.Fatal(err)
	}
	if n := len(c.Events()); n != 2 {
		t.Fatalf("%d events buffered, want 2", n)
	}
	// BAR first: waiting for one event leaves the other in the buffer.
	if err := c.WaitEvent(ctxT(t), "BAR", nil); err != nil {
		t.Fatal(err)
	}
	var n struct{ N int }
	if err := c.WaitEvent(ctxT(t), "FOO", func(d json.RawMessage) bool {
		return json.Unmarshal(d, &n) == nil && n.N == 1
	}); err != nil {
		t.Fatal(err)
	}
	// Taken events are gone.
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.WaitEvent(ctx, "FOO", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second wait for FOO: %v", err)
	}
	c.Close()
	f.stop()
}

func TestEventAfterWait(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake(t)
	c := dial(t, f)
	if _, err := c.Execute(ctxT(t), "emit-later", nil); err != nil {
		t.Fatal(err)
	}
	// A non-matching predicate must not consume the event.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	err := c.WaitEvent(ctx, "LATE", func(json.RawMessage) bool { return false })
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitEvent with false predicate: %v", err)
	}
	if err := c.WaitEvent(ctxT(t), "LATE", nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	f.stop()
}

func TestRepliesOutOfOrder(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake(t)
	c := dial(t, f)
	held := make(chan error, 1)
	var heldRet json.RawMessage
	go func() {
		var err error
		heldRet, err = c.Execute(ctxT(t), "hold", nil)
		held <- err
	}()
	// Wait until the server has the held command, then send another;
	// the server answers the second first.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if cmds := f.commands(); cmds[len(cmds)-1] == "hold" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("server never saw hold")
		}
	}
	ret, err := c.Execute(ctxT(t), "query-status", nil)
	if err != nil || !json.Valid(ret) {
		t.Fatalf("query-status: %s %v", ret, err)
	}
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	if string(heldRet) != `{"held":true}` {
		t.Fatalf("hold returned %s", heldRet)
	}
	c.Close()
	f.stop()
}

func TestCloseUnblocks(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake(t)
	c := dial(t, f)
	errs := make(chan error, 2)
	go func() {
		_, err := c.Execute(context.Background(), "silent", nil)
		errs <- err
	}()
	go func() {
		errs <- c.WaitEvent(context.Background(), "NEVER", nil)
	}()
	time.Sleep(50 * time.Millisecond)
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		select {
		case err := <-errs:
			if !errors.Is(err, ErrClosed) {
				t.Fatalf("blocked call returned %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not unblock a waiting call")
		}
	}
	f.stop()
}

func TestExecuteContext(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake(t)
	c := dial(t, f)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Execute(ctx, "silent", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	if _, err := c.Execute(ctxT(t), "query-status", nil); err != nil {
		t.Fatal(err)
	}
	c.Close()
	f.stop()
}

func TestQuitThenEvent(t *testing.T) {
	defer goleak.VerifyNone(t)
	f := newFake(t)
	c := dial(t, f)
	if _, err := c.Execute(ctxT(t), "quit", nil); err != nil {
		t.Fatal(err)
	}
	// The server has hung up; the buffered event is still there.
	if err := c.WaitEvent(ctxT(t), "SHUTDOWN", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitEvent(ctxT(t), "SHUTDOWN", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("after hang-up: %v", err)
	}
	c.Close()
	f.stop()
}

func TestDialErrors(t *testing.T) {
	defer goleak.VerifyNone(t)
	dir := t.TempDir()
	if _, err := Dial(ctxT(t), filepath.Join(dir, "none.sock")); err == nil {
		t.Fatal("Dial of a missing socket succeeded")
	}

	// A server that accepts and never greets: Dial honours ctx.
	sock, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(sock)
	ln, err := net.Listen("unix", filepath.Join(sock, "mute.sock"))
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c
		}
		close(accepted)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := Dial(ctx, filepath.Join(sock, "mute.sock")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Dial of a mute server: %v", err)
	}
	ln.Close()
	for c := range accepted {
		c.Close()
	}
}

// TestQEMU runs the client against a real QEMU, halted with -S and without
// a kernel, when qemu-system-x86_64 is installed.
func TestQEMU(t *testing.T) {
	bin, err := exec.LookPath("qemu-system-x86_64")
	if err != nil {
		t.Skip("qemu-system-x86_64 not installed")
	}
	dir, err := os.MkdirTemp("", "qmp")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "qmp.sock")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-M", "q35", "-accel", "tcg", "-nodefaults",
		"-nographic", "-S", "-m", "64", "-qmp", "unix:"+sock+",server=on,wait=off")
	out, err := os.Create(filepath.Join(dir, "qemu.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	log := func() string { b, _ := os.ReadFile(out.Name()); return string(b) }

	var c *Client
	for {
		c, err = Dial(ctx, sock)
		if err == nil {
			break
		}
		select {
		case err := <-exited:
			t.Fatalf("qemu exited: %v\n%s", err, log())
		case <-ctx.Done():
			t.Fatalf("no QMP socket: %v\n%s", err, log())
		case <-time.After(50 * time.Millisecond):
		}
	}
	defer c.Close()
	var g struct {
		Version struct{ QEMU struct{ Major int } }
	}
	if err := json.Unmarshal(c.Greeting(), &g); err != nil || g.Version.QEMU.Major == 0 {
		t.Errorf("greeting %s (%v)", c.Greeting(), err)
	}

	ret, err := c.Execute(ctx, "query-status", nil)
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Status  string
		Running bool
	}
	if err := json.Unmarshal(ret, &st); err != nil || st.Running || st.Status != "prelaunch" {
		t.Errorf("query-status = %s, want prelaunch and not running", ret)
	}
	var qe *Error
	if _, err := c.Execute(ctx, "device_del", map[string]any{"id": "nosuch"}); !errors.As(err, &qe) || qe.Desc == "" {
		t.Errorf("device_del nosuch: %v", err)
	}

	if _, err := c.Execute(ctx, "quit", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitEvent(ctx, "SHUTDOWN", nil); err != nil {
		t.Error(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("qemu: %v\n%s", err, log())
		}
	case <-ctx.Done():
		t.Fatal("qemu did not exit after quit")
	}
}
