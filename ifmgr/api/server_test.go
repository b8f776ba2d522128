package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
)

// hangGuard bounds how long a test waits for an answer that, with the bug
// it guards against, would never come. It is not a speed requirement.
const hangGuard = 2 * time.Minute

// startServer serves be on a fresh socket until the test ends. The idle
// timeout is an hour, so nothing in these tests is rescued by it.
func startServer(t *testing.T, be Backend, maxConns int) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "ctl.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{
		Backend:     be,
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
		AllowUID:    func(uint32) bool { return true },
		MaxConns:    maxConns,
		IdleTimeout: time.Hour,
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return path
}

// holdOpen opens n connections that the test keeps open until it ends;
// with half set, each has written part of a request and stops there.
func holdOpen(t *testing.T, path string, n int, half bool) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if half {
			if _, err := c.Write([]byte(`{"v":1,"op":"li`)); err != nil {
				t.Fatal(err)
			}
		}
		conns = append(conns, c)
	}
	return conns
}

// list does one `list` on a new connection, which it keeps open.
func list(t *testing.T, path string) *Client {
	t.Helper()
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	listOn(t, c)
	return c
}

func listOn(t *testing.T, c *Client) {
	t.Helper()
	c.conn.SetDeadline(time.Now().Add(hangGuard))
	l, err := c.List()
	if err != nil {
		t.Fatalf("list: %v", err)
	}
	if len(l) != 1 || l[0].Name != "bridge0" {
		t.Fatalf("list = %+v", l)
	}
}

// TestIdlePeersCannotLockOutTheOperator: a leaking monitoring script holds
// hundreds of idle and half-written connections open (more than MaxConns);
// a new client is still answered, again and again, while all of them are
// held open, and the connections evicted for it are the longest-idle ones.
func TestIdlePeersCannotLockOutTheOperator(t *testing.T) {
	const maxConns = 128
	path := startServer(t, &recordingBackend{}, maxConns)
	idle := holdOpen(t, path, 200, false)
	half := holdOpen(t, path, 200, true)

	op := list(t, path) // answered although 400 peers got there first
	// More clients than the cap could hold, each answered in turn; the
	// operator's connection, younger than the 400, survives them all.
	for range maxConns / 2 {
		list(t, path)
	}
	listOn(t, op)

	// The oldest idle and half-written connections were evicted, and told why.
	for i, c := range []net.Conn{idle[0], half[0]} {
		t.Logf("checking %s connection", []string{"idle", "half-written"}[i])
		expectEvicted(t, c)
	}
}

// TestBusyConnectionNotEvicted: a connection whose request is being served
// is not evicted for a new client, even if it is the oldest; the new client
// gets an idle one's place, and the busy request is answered in the end.
func TestBusyConnectionNotEvicted(t *testing.T) {
	be := &blockingBackend{release: make(chan struct{}), entered: make(chan struct{})}
	path := startServer(t, be, 4)
	busy, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	busy.conn.SetDeadline(time.Now().Add(hangGuard))
	answered := make(chan error, 1)
	go func() { _, err := busy.Status(); answered <- err }()
	<-be.entered // the request is with the backend
	idle := holdOpen(t, path, 3, false)
	list(t, path)
	expectEvicted(t, idle[0])
	close(be.release)
	if err := <-answered; err != nil {
		t.Fatalf("busy request: %v", err)
	}
}

// blockingBackend holds Status until release is closed.
type blockingBackend struct {
	recordingBackend
	entered, release chan struct{}
}

func (b *blockingBackend) Status(ctx context.Context) (ifmgr.Status, error) {
	close(b.entered)
	<-b.release
	return b.recordingBackend.Status(ctx)
}

// expectEvicted reads the ErrEvicted answer and the close of an evicted
// connection.
func expectEvicted(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(hangGuard))
	// One answer line, as a client reads it. What follows it is the close,
	// which the kernel may report as ECONNRESET rather than EOF (a unix
	// socket closed with input still queued resets its peer); the promise
	// is that the client is told why, and that is the line.
	line, err := bufio.NewReader(c).ReadBytes('\n')
	if err != nil {
		t.Fatalf("evicted connection got %q, then %v: no answer line", line, err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil || resp.Code != "evicted" {
		t.Fatalf("evicted connection got %q (%v), want an error with code evicted", line, err)
	}
	if re := (&RemoteError{Code: resp.Code, Msg: resp.Error}); !errors.Is(re, ErrEvicted) {
		t.Fatalf("%v does not unwrap to ErrEvicted", re)
	}
}
