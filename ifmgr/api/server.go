package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sort"
	"sync"
	"syscall"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"golang.org/x/sys/unix"
)

// ErrPermission is answered to a peer whose credentials are refused.
var ErrPermission = errors.New("permission denied")

// Backend is what the server forwards requests to. *ifmgr.Manager is not
// one by itself: its Reload takes the profile to put in force, while a
// reload over the socket means "re-read the profile file". ifmgrd's backend
// (firmware/daemon) embeds the Manager and adds that Reload.
type Backend interface {
	Create(ctx context.Context, req ifmgr.CreateRequest) (ifmgr.Info, error)
	Destroy(ctx context.Context, name string) error
	List(ctx context.Context) ([]ifmgr.Info, error)
	Status(ctx context.Context) (ifmgr.Status, error)
	Resync(ctx context.Context) error
	// Reload re-reads the board profile and applies it (or, with dryRun,
	// answers the plan only).
	Reload(ctx context.Context, dryRun bool) ([]string, error)
}

// Server serves the control socket.
type Server struct {
	Backend Backend
	Logger  *slog.Logger
	// AllowUID decides which peers may talk to the daemon; nil allows uid 0
	// only. Interface configuration is root's business on a router.
	AllowUID func(uid uint32) bool
	// MaxConns bounds concurrent connections so clients cannot exhaust a
	// router's memory; 0 = 128.
	MaxConns int
	// IdleTimeout closes a connection that sends nothing; 0 = 30s.
	IdleTimeout time.Duration
	// RequestTimeout bounds how long a request may wait for the owner; 0 = 60s.
	RequestTimeout time.Duration
}

// Listen creates the Unix socket at path with mode 0600, replacing a stale
// socket left by a crashed daemon but refusing to take over a live one.
func Listen(path string) (*net.UnixListener, error) {
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("socket %s: another daemon is serving it", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("socket %s: remove stale socket: %w", path, err)
	}
	old := syscall.Umask(0o177) // the socket is born 0600: no window where others can connect
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("socket %s: %w", path, err)
	}
	ln.SetUnlinkOnClose(true)
	return ln, nil
}

// Serve accepts connections until ctx ends, then closes the listener and
// waits for every connection handler to finish its request in hand.
//
// At most MaxConns connections are open at once. When a new client comes
// while all of them are open, the one that has waited longest for its next
// request (idle, or stuck half-way through writing one) is closed with an
// ErrEvicted answer to make room: a script that leaks connections must not
// lock the operator out of the control plane. A connection whose request
// is being served is never evicted; if every one is busy, the new client
// waits for the first to finish.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	log := s.Logger
	if log == nil {
		log = slog.Default()
	}
	maxConns := s.MaxConns
	if maxConns <= 0 {
		maxConns = 128
	}
	slots := make(chan struct{}, maxConns)
	var wg sync.WaitGroup
	tab := &connTable{conns: map[*peer]bool{}, max: maxConns, log: log}

	stop := make(chan struct{})
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		select {
		case <-ctx.Done():
			// Every client taken in gets an answer: refuse new connects
			// first, then answer those already queued (closing a listener
			// resets them), then close.
			s.answerBacklog(ln, &wg, log)
		case <-stop:
		}
		ln.Close()
		tab.wakeAll() // idle readers answer closed; busy ones finish their request first
	}()
	defer func() {
		close(stop)
		<-stopped // no wg.Add after this
		wg.Wait()
	}()

	for {
		c, err := ln.AcceptUnix()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		if !tab.makeRoom(ctx, slots) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				tellClosed(c)
			}()
			return nil
		}
		p := tab.add(c)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.handle(ctx, p, log)
			tab.remove(p)
			c.Close()
		}()
	}
}

// peer is one open control connection.
type peer struct {
	c     *net.UnixConn
	table *connTable
	// waitingSince is when the connection began waiting for its next
	// request line; zero while a request is being served.
	waitingSince time.Time
	evicted      bool
	// outstanding counts the requests read and not yet answered (a
	// pipelining client has many); while there are any, the connection is
	// busy, neither idle nor evictable.
	outstanding int
	// broken: an answer could not be written; the reader stops.
	broken bool
}

// connTable is the set of open connections, for eviction and shutdown.
type connTable struct {
	mu      sync.Mutex
	conns   map[*peer]bool
	max     int
	log     *slog.Logger
	evicted int  // since the socket last filled up; 0 = not under pressure
	closing bool // shutdown: no reader waits for another request
	peek    [MaxRequestSize + 1]byte
}

// requestQueued reports whether a complete request line waits unread in
// c's socket (peeked, not consumed).
func requestQueued(c *net.UnixConn, buf []byte) bool {
	raw, err := c.SyscallConn()
	if err != nil {
		return false
	}
	n := 0
	raw.Control(func(fd uintptr) {
		n, _, err = unix.Recvfrom(int(fd), buf, unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	return err == nil && bytes.IndexByte(buf[:max(n, 0)], '\n') >= 0
}

func (t *connTable) add(c *net.UnixConn) *peer {
	p := &peer{c: c, table: t, waitingSince: time.Now()}
	t.mu.Lock()
	t.conns[p] = true
	t.mu.Unlock()
	return p
}

// remove forgets p. Once the socket is down to half full after evictions,
// the episode is over and its count is logged.
func (t *connTable) remove(p *peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.conns, p)
	if t.evicted > 0 && len(t.conns) <= t.max/2 {
		t.log.Info("control socket no longer full", "idle_connections_evicted", t.evicted)
		t.evicted = 0
	}
}

// makeRoom takes a connection slot for a new client, evicting the
// longest-waiting connection if none is free. It returns false if ctx ends
// first.
func (t *connTable) makeRoom(ctx context.Context, slots chan struct{}) bool {
	for {
		select {
		case slots <- struct{}{}:
			return true
		default:
		}
		t.evictLongestIdle()
		// The evicted handler (or, if all were busy, the first to finish
		// its request) frees a slot; or, all idle ones being younger than
		// minIdle, one of them ages into a victim.
		select {
		case slots <- struct{}{}:
			return true
		case <-ctx.Done():
			return false
		case <-time.After(minIdle / 4):
		}
	}
}

// minIdle is how long a connection must have waited for its request before
// it may be evicted: a client that just connected and is about to write is
// not idle (a burst of hundreds of concurrent clients, each connecting and
// then writing, otherwise evicts its own members).
const minIdle = time.Second

func (t *connTable) evictLongestIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	var idle []*peer
	young := time.Now().Add(-minIdle)
	for p := range t.conns {
		if p.evicted {
			return // its slot is on its way back: one eviction at a time
		}
		if p.waitingSince.IsZero() || p.waitingSince.After(young) {
			continue
		}
		idle = append(idle, p)
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].waitingSince.Before(idle[j].waitingSince) })
	var victim *peer
	for _, p := range idle {
		// A connection whose whole request already waits in its socket
		// is not idle: its handler just has not read it yet (a burst of
		// new clients; found by TestSIGTERMAnswersEveryClient, where 500
		// concurrent creates were answered "idle" by the hundred).
		if !requestQueued(p.c, t.peek[:]) {
			victim = p
			break
		}
	}
	if victim == nil {
		return // every connection is serving a request or new: wait
	}
	if t.evicted == 0 {
		t.log.Warn("control socket full: closing the longest-idle connections to serve new clients (a client leaking connections?)",
			"max_connections", t.max)
	}
	t.evicted++
	victim.evicted = true
	victim.c.SetReadDeadline(time.Now()) // wakes its reader
}

// await prepares p's reader to wait for its next request line. With no
// request outstanding, p is idle: it waits at most d, and may be evicted
// meanwhile. With some outstanding (a pipelining client waiting for its
// answers before it sends more), it is busy and waits without a deadline:
// answered sets one when the last answer is out. It returns false if p is
// to stop reading (evicted, its answers cannot be written, or shutdown).
// Deadlines are set under the lock so that an eviction's or a shutdown's
// wake-up cannot be overwritten by a later one.
func (t *connTable) await(p *peer, d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.evicted || p.broken || t.closing {
		return false
	}
	if p.outstanding > 0 {
		p.c.SetReadDeadline(time.Time{})
		return true
	}
	if p.waitingSince.IsZero() {
		p.waitingSince = time.Now()
	}
	p.c.SetReadDeadline(time.Now().Add(d))
	return true
}

// busy marks p as serving a request it just read: not to be evicted until
// its answer is written.
func (t *connTable) busy(p *peer) {
	t.mu.Lock()
	p.outstanding++
	p.waitingSince = time.Time{}
	t.mu.Unlock()
}

// answered counts one answer written to p. After the last outstanding
// one, p waits for its next request, idle, for at most d.
func (t *connTable) answered(p *peer, d time.Duration) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.outstanding--
	if p.outstanding > 0 || p.evicted || t.closing {
		return
	}
	p.waitingSince = time.Now()
	p.c.SetReadDeadline(time.Now().Add(d))
}

// writeFailed marks p as broken and wakes its reader.
func (t *connTable) writeFailed(p *peer) {
	t.mu.Lock()
	defer t.mu.Unlock()
	p.broken = true
	p.c.SetReadDeadline(time.Now())
}

func (t *connTable) wasEvicted(p *peer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return p.evicted
}

// wakeAll makes every waiting reader return, for shutdown. Answers still
// outstanding are written first, then ErrClosed.
func (t *connTable) wakeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.closing = true
	for p := range t.conns {
		p.c.SetReadDeadline(time.Now())
	}
}

func (s *Server) handle(ctx context.Context, p *peer, log *slog.Logger) {
	c := p.c
	enc := json.NewEncoder(c)
	uid, err := peerUID(c)
	allow := s.AllowUID
	if allow == nil {
		allow = func(uid uint32) bool { return uid == 0 }
	}
	if err != nil || !allow(uid) {
		why := fmt.Errorf("%w: only root may configure interfaces (peer uid %d)", ErrPermission, uid)
		if err != nil {
			why = fmt.Errorf("%w: cannot read peer credentials: %v", ErrPermission, err)
		}
		log.Warn("control connection refused", "uid", uid, "err", why)
		// Take the peer's request before answering, so its write does not
		// meet a closed socket (EPIPE) and it gets to read the reason.
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		readLine(bufio.NewReaderSize(c, 512), MaxRequestSize)
		enc.Encode(ErrorResponse(why))
		return
	}
	idle := s.IdleTimeout
	if idle <= 0 {
		idle = 30 * time.Second
	}
	// The reader (this goroutine) reads requests ahead and queues them;
	// the writer answers them in request order. Closing answers, then
	// waiting for the writer, means every request read gets its answer
	// before the connection closes.
	answers := make(chan pendingAnswer, MaxPipelined)
	written := make(chan struct{})
	go s.writeAnswers(p, idle, answers, written)
	defer func() {
		close(answers)
		<-written
	}()
	chain := new(ifmgr.Chain) // for the requests that ask to be chained
	br := bufio.NewReaderSize(c, 8192)
	for {
		if !p.table.await(p, idle) || ctx.Err() != nil {
			s.lastWord(ctx, p, answers)
			return
		}
		line, err := readLine(br, MaxRequestSize)
		if errors.Is(err, errTooLong) {
			p.table.busy(p)
			answers <- answerNow(ErrorResponse(fmt.Errorf("%w: request exceeds %d bytes", ErrProtocol, MaxRequestSize)))
			return
		}
		if err != nil {
			if !errors.Is(err, io.EOF) || p.table.wasEvicted(p) {
				s.lastWord(ctx, p, answers) // woken: evicted or shutdown, maybe half-way through a request
			}
			return // EOF, idle timeout, eviction, shutdown or a failed write
		}
		p.table.busy(p)
		req, err := DecodeRequest(line)
		var a pendingAnswer
		if err != nil {
			// A barrier, so that the chain breaks here, not before the
			// requests ahead of it are done.
			a = barrier(func() Response { return ErrorResponse(err) }, chain)
		} else {
			a = s.start(req, chain)
		}
		answers <- a // blocks while MaxPipelined answers are outstanding
		if a.served != nil {
			<-a.served // not queued ahead: nothing after it may overtake it
		}
	}
}

// MaxPipelined bounds the requests one connection may have read and not
// yet answered; past it the server stops reading that connection until
// answers are written (the client's writes then wait in its socket).
const MaxPipelined = 256

// Queuer is a Backend that can queue a create or a destroy and answer it
// later: *ifmgr.Manager's QueueCreate and QueueDestroy. With one, the
// server pipelines each connection's creates and destroys: it reads ahead
// and queues them, in request order, while earlier ones are served, so the
// owner takes those queued together as one batch, one DB commit. Every
// other request, and every request to a Backend without it, is a barrier:
// it is served after every request before it is answered, and the next
// is read only after it.
type Queuer interface {
	QueueCreate(ctx context.Context, req ifmgr.CreateRequest, chain *ifmgr.Chain) func() (ifmgr.Info, error)
	QueueDestroy(ctx context.Context, name string, chain *ifmgr.Chain) func() error
}

// pendingAnswer is the answer to one request, in the order read.
type pendingAnswer struct {
	wait func() Response
	// served is closed once a barrier request is served; nil for a
	// queued request.
	served chan struct{}
	// last: the connection's closing word (evicted, closed), not the
	// answer to a request read; written with a bounded deadline.
	last bool
}

func answerNow(r Response) pendingAnswer { return pendingAnswer{wait: func() Response { return r }} }

// lastWord queues why the connection closes, if it is closed on the
// daemon's side: evicted, or shutdown. A client that closed, sent a bad
// line, or stopped reading its answers gets none.
func (s *Server) lastWord(ctx context.Context, p *peer, answers chan<- pendingAnswer) {
	var why error
	switch {
	case p.table.wasEvicted(p):
		why = ErrEvicted
	case ctx.Err() != nil:
		why = ifmgr.ErrClosed
	default:
		return
	}
	a := answerNow(ErrorResponse(why))
	a.last = true
	answers <- a
}

// start queues req with the backend if it can be pipelined, or else
// returns a barrier that the writer serves in its turn. A chained request
// is tied to the connection's chain.
func (s *Server) start(req Request, chain *ifmgr.Chain) pendingAnswer {
	if !req.Chain {
		chain = nil
	}
	q, pipelines := s.Backend.(Queuer)
	if pipelines && (req.Op == OpCreate || req.Op == OpDestroy) {
		// Not the server's ctx: a request queued completes even while the
		// daemon shuts down ("finish the request in hand").
		ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
		if req.Op == OpCreate {
			wait := q.QueueCreate(ctx, ifmgr.CreateRequest{Name: req.Name, Dev: req.Dev, VID: req.VID}, chain)
			return pendingAnswer{wait: func() Response {
				defer cancel()
				in, err := wait()
				if err != nil {
					return ErrorResponse(err)
				}
				return Response{V: Version, Info: &in}
			}}
		}
		wait := q.QueueDestroy(ctx, req.Name, chain)
		return pendingAnswer{wait: func() Response {
			defer cancel()
			if err := wait(); err != nil {
				return ErrorResponse(err)
			}
			return Response{V: Version}
		}}
	}
	return barrier(func() Response {
		if chain.Failed() {
			return ErrorResponse(ifmgr.ErrSkipped)
		}
		return s.dispatch(req)
	}, chain)
}

// barrier is an answer served by the writer once every answer before it
// is written; the reader reads on only after it. A failure breaks chain
// (nil: none) before the reader goes on.
func barrier(serve func() Response, chain *ifmgr.Chain) pendingAnswer {
	served := make(chan struct{})
	return pendingAnswer{served: served, wait: func() Response {
		defer close(served)
		resp := serve()
		if resp.Error != "" && chain != nil {
			chain.Fail()
		}
		return resp
	}}
}

// writeAnswers writes p's answers in request order, each as soon as it is
// known. Once a write fails it writes no more, but still waits for every
// answer (each request is finished, and its context released) and wakes
// the reader to stop.
func (s *Server) writeAnswers(p *peer, idle time.Duration, answers <-chan pendingAnswer, done chan<- struct{}) {
	defer close(done)
	enc := json.NewEncoder(p.c)
	failed := false
	for a := range answers {
		resp := a.wait()
		if failed {
			continue
		}
		if a.last {
			p.c.SetWriteDeadline(time.Now().Add(shutdownGrace))
			enc.Encode(resp)
			continue
		}
		err := enc.Encode(resp)
		p.table.answered(p, idle)
		if err != nil {
			failed = true
			p.table.writeFailed(p)
		}
	}
}

// shutdownGrace bounds how long the closing answer may take to write at
// shutdown, so a peer that does not read cannot hold the daemon up.
const shutdownGrace = time.Second

// tellClosed is the last word on a connection at shutdown: an ErrClosed
// answer (the request it sent or is sending is not served; a peer that was
// idle reads it as the answer to whatever it sends next), then the close.
// Closing a Unix socket with unread input resets the peer (ECONNRESET), but
// only after the data already queued for it: the answer is read first,
// which is the promise. No lingering read, so shutdown never waits on a
// peer that keeps its connection open.
func tellClosed(c *net.UnixConn) {
	defer c.Close()
	c.SetWriteDeadline(time.Now().Add(shutdownGrace))
	json.NewEncoder(c).Encode(ErrorResponse(ifmgr.ErrClosed))
}

// answerBacklog runs once at shutdown. shutdown(2) of the listener's read
// side makes the kernel refuse new connects (ECONNREFUSED: never taken in,
// the client knows to retry), while the connections it already queued can
// still be accepted: each is answered closed (tellClosed), in a goroutine
// counted in wg. Without this, closing the listener resets every queued
// client.
func (s *Server) answerBacklog(ln *net.UnixListener, wg *sync.WaitGroup, log *slog.Logger) {
	raw, err := ln.SyscallConn()
	if err != nil {
		return
	}
	var serr error
	raw.Control(func(fd uintptr) { serr = unix.Shutdown(int(fd), unix.SHUT_RD) })
	if serr != nil {
		log.Warn("control socket: refusing new clients at shutdown", "err", serr)
	}
	answered := 0
	for {
		nfd := -1
		raw.Control(func(fd uintptr) {
			for {
				nfd, _, serr = unix.Accept4(int(fd), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
				if serr != unix.EINTR {
					return
				}
			}
		})
		if serr != nil {
			break // EAGAIN: the queue is empty
		}
		f := os.NewFile(uintptr(nfd), "control connection")
		fc, err := net.FileConn(f)
		f.Close()
		if err != nil {
			continue
		}
		answered++
		wg.Add(1)
		go func() {
			defer wg.Done()
			tellClosed(fc.(*net.UnixConn))
		}()
	}
	if answered > 0 {
		log.Info("control socket: queued clients answered closed at shutdown", "clients", answered)
	}
}

func (s *Server) requestTimeout() time.Duration {
	if s.RequestTimeout <= 0 {
		return 60 * time.Second
	}
	return s.RequestTimeout
}

func (s *Server) dispatch(req Request) Response {
	// Not the server's ctx: a request taken by the owner completes even while
	// the daemon shuts down ("finish the request in hand").
	ctx, cancel := context.WithTimeout(context.Background(), s.requestTimeout())
	defer cancel()
	resp := Response{V: Version}
	var err error
	switch req.Op {
	case OpCreate:
		var in ifmgr.Info
		in, err = s.Backend.Create(ctx, ifmgr.CreateRequest{Name: req.Name, Dev: req.Dev, VID: req.VID})
		resp.Info = &in
	case OpDestroy:
		err = s.Backend.Destroy(ctx, req.Name)
	case OpList:
		resp.List, err = s.Backend.List(ctx)
		if resp.List == nil {
			resp.List = []ifmgr.Info{}
		}
	case OpStatus:
		var st ifmgr.Status
		st, err = s.Backend.Status(ctx)
		resp.Status = &st
	case OpResync:
		err = s.Backend.Resync(ctx)
	case OpReload:
		resp.Plan, err = s.Backend.Reload(ctx, req.DryRun)
	}
	if err != nil {
		return ErrorResponse(err)
	}
	return resp
}

var errTooLong = errors.New("line too long")

// readLine reads one '\n'-terminated line of at most max bytes without
// buffering more than that.
func readLine(br *bufio.Reader, max int) ([]byte, error) {
	var line []byte
	for {
		chunk, err := br.ReadSlice('\n')
		line = append(line, chunk...)
		if len(line) > max+1 {
			return nil, errTooLong
		}
		switch {
		case err == nil:
			return line[:len(line)-1], nil
		case errors.Is(err, bufio.ErrBufferFull):
			continue
		case errors.Is(err, io.EOF) && len(line) > 0:
			return line, nil
		default:
			return nil, err
		}
	}
}

func peerUID(c *net.UnixConn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return 0, err
	}
	if credErr != nil {
		return 0, credErr
	}
	return cred.Uid, nil
}
