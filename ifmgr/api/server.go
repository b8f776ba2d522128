package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
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
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		ln.Close()
		tab.wakeAll() // idle readers return; busy ones finish their request
	}()
	defer func() {
		close(stop)
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
			c.Close()
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
}

// connTable is the set of open connections, for eviction and shutdown.
type connTable struct {
	mu      sync.Mutex
	conns   map[*peer]bool
	max     int
	log     *slog.Logger
	evicted int // since the socket last filled up; 0 = not under pressure
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
	select {
	case slots <- struct{}{}:
		return true
	default:
	}
	t.evictLongestIdle()
	// The evicted handler (or, if all were busy, the first to finish its
	// request) frees a slot.
	select {
	case slots <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (t *connTable) evictLongestIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	var victim *peer
	for p := range t.conns {
		if p.evicted || p.waitingSince.IsZero() {
			continue
		}
		if victim == nil || p.waitingSince.Before(victim.waitingSince) {
			victim = p
		}
	}
	if victim == nil {
		return // every connection is serving a request: wait for one
	}
	if t.evicted == 0 {
		t.log.Warn("control socket full: closing the longest-idle connections to serve new clients (a client leaking connections?)",
			"max_connections", t.max)
	}
	t.evicted++
	victim.evicted = true
	victim.c.SetReadDeadline(time.Now()) // wakes its reader
}

// await marks p as waiting for a request for at most d. It returns false
// if p has been evicted. The deadline is set under the lock so that an
// eviction's wake-up cannot be overwritten by a later, longer deadline.
func (t *connTable) await(p *peer, d time.Duration) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if p.evicted {
		return false
	}
	if p.waitingSince.IsZero() {
		p.waitingSince = time.Now()
	}
	p.c.SetReadDeadline(time.Now().Add(d))
	return true
}

// busy marks p as serving a request: not to be evicted until it is done.
func (t *connTable) busy(p *peer) {
	t.mu.Lock()
	p.waitingSince = time.Time{}
	t.mu.Unlock()
}

func (t *connTable) wasEvicted(p *peer) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return p.evicted
}

// wakeAll makes every waiting reader return, for shutdown. A connection
// serving a request sets a new deadline only after it finished, and then
// sees ctx done.
func (t *connTable) wakeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
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
	br := bufio.NewReaderSize(c, 512)
	for {
		if ctx.Err() != nil {
			return
		}
		if !p.table.await(p, idle) {
			s.tellEvicted(p)
			return
		}
		line, err := readLine(br, MaxRequestSize)
		if errors.Is(err, errTooLong) {
			enc.Encode(ErrorResponse(fmt.Errorf("%w: request exceeds %d bytes", ErrProtocol, MaxRequestSize)))
			return
		}
		if err != nil {
			if p.table.wasEvicted(p) {
				s.tellEvicted(p)
			}
			return // EOF, idle timeout, eviction or shutdown
		}
		p.table.busy(p)
		req, err := DecodeRequest(line)
		if err != nil {
			enc.Encode(ErrorResponse(err))
			continue
		}
		if err := enc.Encode(s.dispatch(req)); err != nil {
			return
		}
	}
}

// tellEvicted answers an evicted connection why it is closed, without
// waiting on a peer that does not read.
func (s *Server) tellEvicted(p *peer) {
	p.c.SetWriteDeadline(time.Now().Add(time.Second))
	json.NewEncoder(p.c).Encode(ErrorResponse(ErrEvicted))
}

func (s *Server) dispatch(req Request) Response {
	timeout := s.RequestTimeout
	if timeout <= 0 {
		timeout = 60 * time.Second
	}
	// Not the server's ctx: a request taken by the owner completes even while
	// the daemon shuts down ("finish the request in hand").
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
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
