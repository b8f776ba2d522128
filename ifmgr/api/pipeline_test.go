package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
)

// queueBackend is a Backend and a Queuer: it records the order in which
// requests reach it and holds every queued answer until the test opens the
// gate, as an owner busy with a commit would.
type queueBackend struct {
	recordingBackend
	gate   chan struct{}
	queued chan string // each queued create's name or destroy's "-name", as it is queued
}

func newQueueBackend() *queueBackend {
	return &queueBackend{gate: make(chan struct{}), queued: make(chan string, 1024)}
}

func (b *queueBackend) QueueCreate(_ context.Context, req ifmgr.CreateRequest, chain *ifmgr.Chain) func() (ifmgr.Info, error) {
	b.record(OpCreate)
	b.queued <- req.Name
	return func() (ifmgr.Info, error) {
		<-b.gate
		if req.Name == "fail" {
			chain.Fail()
			return ifmgr.Info{}, fmt.Errorf("fail: %w", ifmgr.ErrUnitExists)
		}
		return ifmgr.Info{Name: req.Name}, nil
	}
}

func (b *queueBackend) QueueDestroy(_ context.Context, name string, _ *ifmgr.Chain) func() error {
	b.record(OpDestroy)
	b.queued <- "-" + name
	return func() error { <-b.gate; return nil }
}

var _ Queuer = (*queueBackend)(nil)

// rawConn writes request lines without waiting for answers and reads the
// answers one by one.
type rawConn struct {
	t  *testing.T
	c  *net.UnixConn
	br *bufio.Reader
}

func dialRaw(t *testing.T, path string) *rawConn {
	t.Helper()
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(hangGuard))
	return &rawConn{t: t, c: c.(*net.UnixConn), br: bufio.NewReader(c)}
}

func (r *rawConn) send(reqs ...Request) {
	r.t.Helper()
	for _, req := range reqs {
		req.V = Version
		if err := json.NewEncoder(r.c).Encode(req); err != nil {
			r.t.Fatal(err)
		}
	}
}

func (r *rawConn) read() Response {
	r.t.Helper()
	line, err := r.br.ReadBytes('\n')
	if err != nil {
		r.t.Fatalf("read answer: %v", err)
	}
	var resp Response
	if err := json.Unmarshal(line, &resp); err != nil {
		r.t.Fatal(err)
	}
	return resp
}

func create(name string) Request { return Request{Op: OpCreate, Name: name} }

func expectQueued(t *testing.T, be *queueBackend, want ...string) {
	t.Helper()
	for _, w := range want {
		select {
		case got := <-be.queued:
			if got != w {
				t.Fatalf("queued %q, want %q", got, w)
			}
		case <-time.After(hangGuard):
			t.Fatalf("%q never queued", w)
		}
	}
}

func expectNothingQueued(t *testing.T, be *queueBackend) {
	t.Helper()
	select {
	case got := <-be.queued:
		t.Fatalf("queued %q before the barrier ahead of it was served", got)
	case <-time.After(50 * time.Millisecond): // a bug would queue it at once
	}
}

// The server reads ahead: every create sent is queued with the backend
// while none is answered yet, and the answers come in request order.
func TestPipelineReadsAhead(t *testing.T) {
	be := newQueueBackend()
	r := dialRaw(t, startServer(t, be, 0))
	var names []string
	for i := range 50 {
		names = append(names, fmt.Sprintf("bridge%d", i))
		r.send(create(names[i]))
	}
	expectQueued(t, be, names...) // all 50 queued; the gate is shut
	close(be.gate)
	for _, n := range names {
		if resp := r.read(); resp.Error != "" || resp.Info == nil || resp.Info.Name != n {
			t.Fatalf("answer %+v, want %s", resp, n)
		}
	}
}

// A request that cannot be queued (list) is a barrier: it is served after
// the requests before it are answered, and nothing after it is queued
// before it is served.
func TestPipelineBarrier(t *testing.T) {
	be := newQueueBackend()
	r := dialRaw(t, startServer(t, be, 0))
	r.send(create("a"), create("b"), Request{Op: OpList}, create("c"), Request{Op: OpDestroy, Name: "a"})
	expectQueued(t, be, "a", "b")
	expectNothingQueued(t, be)
	if calls := be.taken(); len(calls) != 2 {
		t.Fatalf("backend calls before the gate: %v, want the two creates only", calls)
	}
	close(be.gate)
	expectQueued(t, be, "c", "-a")
	for i, want := range []string{"a", "b", "list", "c", "destroy"} {
		resp := r.read()
		switch {
		case resp.Error != "":
			t.Fatalf("answer %d: %s", i, resp.Error)
		case want == "list" && len(resp.List) != 1:
			t.Fatalf("answer %d: %+v, want the list", i, resp)
		case want != "list" && want != "destroy" && (resp.Info == nil || resp.Info.Name != want):
			t.Fatalf("answer %d: %+v, want %s", i, resp, want)
		}
	}
	if calls := be.taken(); fmt.Sprint(calls) != "[list create destroy]" {
		t.Errorf("backend calls after the gate: %v", calls)
	}
}

// A chained batch: a bad line breaks the chain where it stands; the chained
// barrier behind it is skipped without reaching the backend.
func TestPipelineChainBadLine(t *testing.T) {
	be := newQueueBackend()
	close(be.gate)
	r := dialRaw(t, startServer(t, be, 0))
	r.send(Request{Op: OpCreate, Name: "a", Chain: true})
	if _, err := r.c.Write([]byte("{\"v\":1,\"op\":\"frob\"}\n")); err != nil {
		t.Fatal(err)
	}
	r.send(Request{Op: OpStatus, Chain: true}, Request{Op: OpList})
	if resp := r.read(); resp.Error != "" {
		t.Fatalf("a: %s", resp.Error)
	}
	if resp := r.read(); resp.Code != "protocol" {
		t.Fatalf("bad line: %+v, want a protocol error", resp)
	}
	if resp := r.read(); resp.Code != "skipped" {
		t.Fatalf("chained status behind it: %+v, want skipped", resp)
	}
	if resp := r.read(); resp.Error != "" {
		t.Fatalf("unchained list: %s", resp.Error)
	}
	for _, c := range be.taken() {
		if c == OpStatus {
			t.Errorf("the skipped status reached the backend")
		}
	}
}

// A client that shuts its write side after its requests still gets every
// answer, in order, then EOF (ifctl -batch does this).
func TestPipelineHalfClose(t *testing.T) {
	be := newQueueBackend()
	r := dialRaw(t, startServer(t, be, 0))
	for i := range 20 {
		r.send(create(fmt.Sprint(i)))
	}
	if err := r.c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	expectQueued(t, be, "0", "1", "2")
	close(be.gate)
	for i := range 20 {
		if resp := r.read(); resp.Info == nil || resp.Info.Name != fmt.Sprint(i) {
			t.Fatalf("answer %d: %+v", i, resp)
		}
	}
	if _, err := r.br.ReadBytes('\n'); err == nil {
		t.Fatal("more than the answers")
	}
}

// Client.Pipeline keeps at most its window unanswered, hands the answers
// back in order, and reports a failure found before sending in its turn.
func TestClientPipeline(t *testing.T) {
	be := newQueueBackend()
	path := startServer(t, be, 0)
	c, err := Dial(path)
	if err != nil {
		t.Fatal(err)
	}
	c.conn.SetDeadline(time.Now().Add(hangGuard))
	const n, window = 40, 8
	i := 0
	next := func() (Pipelined, bool) {
		if i == n {
			return Pipelined{}, false
		}
		i++
		if i == 10 {
			return Pipelined{Err: fmt.Errorf("line 10: bad")}, true
		}
		return Pipelined{Req: create(fmt.Sprint(i))}, true
	}
	var mu sync.Mutex
	var got []string
	done := make(chan error, 1)
	go func() {
		done <- c.Pipeline(next, window, func(resp Response, err error) bool {
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				got = append(got, "err")
			} else {
				got = append(got, resp.Info.Name)
			}
			return true
		})
	}()
	// With the gate shut, no more than the window (plus the one the
	// receiver waits for and the one the sender holds) can be queued.
	time.Sleep(100 * time.Millisecond)
	q := len(be.queued)
	t.Logf("%d queued with the gate shut, window %d", q, window)
	if q > window+2 {
		t.Errorf("%d requests queued unanswered, window %d", q, window)
	}
	close(be.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for k := 1; k <= n; k++ {
		want := fmt.Sprint(k)
		if k == 10 {
			want = "err"
		}
		if got[k-1] != want {
			t.Fatalf("answer %d = %s, want %s (all: %v)", k, got[k-1], want, got)
		}
	}
}
