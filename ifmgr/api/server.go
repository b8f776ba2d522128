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
	var mu sync.Mutex
	conns := map[*net.UnixConn]bool{}

	stop := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
		case <-stop:
		}
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.SetReadDeadline(time.Now()) // wake idle readers; busy ones finish their request
		}
		mu.Unlock()
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	for {
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		c, err := ln.AcceptUnix()
		if err != nil {
			<-slots
			if ctx.Err() != nil {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept: %w", err)
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			s.handle(ctx, c, log)
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
	}
}

func (s *Server) handle(ctx context.Context, c *net.UnixConn, log *slog.Logger) {
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
		c.SetReadDeadline(time.Now().Add(idle))
		line, err := readLine(br, MaxRequestSize)
		if errors.Is(err, errTooLong) {
			enc.Encode(ErrorResponse(fmt.Errorf("%w: request exceeds %d bytes", ErrProtocol, MaxRequestSize)))
			return
		}
		if err != nil {
			return // EOF, idle timeout or shutdown
		}
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
