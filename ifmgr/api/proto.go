// Package api is the wire protocol between ifctl and ifmgrd: one JSON object
// per line over a Unix socket, each request versioned and size-limited, each
// answer carrying an error code that maps back to ifmgr's error values.
package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/uroute/uroute/ifmgr"
)

// Version is the protocol version this build speaks. A daemon refuses other
// versions with a clear error rather than guessing at their meaning.
const Version = 1

// MaxRequestSize bounds one request line, so a confused or hostile client
// cannot make the daemon buffer without limit on a small router.
const MaxRequestSize = 4096

// Operations.
const (
	OpCreate  = "create"
	OpDestroy = "destroy"
	OpList    = "list"
	OpStatus  = "status"
	OpResync  = "resync"
	OpReload  = "reload"
)

// Request is one client request.
type Request struct {
	V    int    `json:"v"`
	Op   string `json:"op"`
	Name string `json:"name,omitempty"` // create: cloner or interface name; destroy: interface name
	Dev  string `json:"dev,omitempty"`  // create vlan: parent
	VID  int    `json:"vid,omitempty"`  // create vlan: 802.1Q id
	// DryRun (reload): answer the plan without applying it.
	DryRun bool `json:"dry_run,omitempty"`
	// Chain: skip this request (answer "skipped") if a chained request
	// before it on this connection failed, as ip -batch stops at its first
	// failure. A client pipelining a batch sets it on every request unless
	// told to go on past errors (ifctl -batch -force).
	Chain bool `json:"chain,omitempty"`
}

// Response is the daemon's answer.
type Response struct {
	V      int           `json:"v"`
	Error  string        `json:"error,omitempty"`
	Code   string        `json:"code,omitempty"`
	Info   *ifmgr.Info   `json:"info,omitempty"`
	List   []ifmgr.Info  `json:"list,omitempty"`
	Status *ifmgr.Status `json:"status,omitempty"`
	Plan   []string      `json:"plan,omitempty"` // reload: the actions, one per line
}

// ErrProtocol marks a request the daemon could not even read.
var ErrProtocol = errors.New("protocol error")

// ErrEvicted is the last answer on a connection the daemon closed because
// it sat idle while the control socket was full and a new client waited.
var ErrEvicted = errors.New("connection closed: it was idle while the control socket was full")

// DecodeRequest parses and checks one request line. Everything a request may
// carry is bounded here, before the manager sees it.
func DecodeRequest(line []byte) (Request, error) {
	var r Request
	if len(line) > MaxRequestSize {
		return r, fmt.Errorf("%w: request of %d bytes exceeds %d", ErrProtocol, len(line), MaxRequestSize)
	}
	if !utf8.Valid(line) {
		return r, fmt.Errorf("%w: request is not UTF-8", ErrProtocol)
	}
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r); err != nil {
		return r, fmt.Errorf("%w: %v", ErrProtocol, err)
	}
	if dec.More() {
		return r, fmt.Errorf("%w: trailing data after the request", ErrProtocol)
	}
	if r.V != Version {
		return r, fmt.Errorf("%w: protocol version %d, this daemon speaks %d", ErrProtocol, r.V, Version)
	}
	switch r.Op {
	case OpCreate:
		if r.Name == "" {
			return r, fmt.Errorf("%w: create needs a name", ErrProtocol)
		}
	case OpDestroy:
		if r.Name == "" {
			return r, fmt.Errorf("%w: destroy needs a name", ErrProtocol)
		}
		if r.Dev != "" || r.VID != 0 {
			return r, fmt.Errorf("%w: destroy takes only a name", ErrProtocol)
		}
	case OpList, OpStatus, OpResync, OpReload:
		if r.Name != "" || r.Dev != "" || r.VID != 0 || (r.DryRun && r.Op != OpReload) {
			return r, fmt.Errorf("%w: %s takes no arguments", ErrProtocol, r.Op)
		}
	default:
		return r, fmt.Errorf("%w: unknown op %q", ErrProtocol, r.Op)
	}
	if len(r.Name) > 64 || len(r.Dev) > 64 {
		return r, fmt.Errorf("%w: name longer than 64 bytes", ErrProtocol)
	}
	if r.Dev != "" {
		if err := ifmgr.ValidName(r.Dev); err != nil {
			return r, fmt.Errorf("dev: %w", err)
		}
	}
	return r, nil
}

// codes maps error values to stable wire codes, in match order.
var codes = []struct {
	code string
	err  error
}{
	{"unit-range", ifmgr.ErrUnitRange},
	{"unit-exists", ifmgr.ErrUnitExists},
	{"name-taken", ifmgr.ErrNameTaken},
	{"name-too-long", ifmgr.ErrNameTooLong},
	{"bad-name", ifmgr.ErrBadName},
	{"unknown-kind", ifmgr.ErrUnknownKind},
	{"not-owned", ifmgr.ErrNotOwned},
	{"no-such-link", ifmgr.ErrNoSuchLink},
	{"bad-vid", ifmgr.ErrBadVID},
	{"vlan-exists", ifmgr.ErrVLANExists},
	{"persist", ifmgr.ErrPersist},
	{"kernel", ifmgr.ErrKernel},
	{"closed", ifmgr.ErrClosed},
	{"bad-request", ifmgr.ErrBadRequest},
	{"from-profile", ifmgr.ErrFromProfile},
	{"bad-profile", ifmgr.ErrBadProfile},
	{"busy", ifmgr.ErrQueueTimeout},
	{"skipped", ifmgr.ErrSkipped},
	{"protocol", ErrProtocol},
	{"permission", ErrPermission},
	{"evicted", ErrEvicted},
}

// CodeOf returns the wire code of err ("internal" if it has none).
func CodeOf(err error) string {
	for _, c := range codes {
		if errors.Is(err, c.err) {
			return c.code
		}
	}
	return "internal"
}

// RemoteError is an error answered by the daemon. It unwraps to the ifmgr
// error value its code names, so errors.Is works across the socket.
type RemoteError struct {
	Code string
	Msg  string
}

func (e *RemoteError) Error() string { return e.Msg }

// Unwrap returns the error value named by the code, if any.
func (e *RemoteError) Unwrap() error {
	for _, c := range codes {
		if c.code == e.Code {
			return c.err
		}
	}
	return nil
}

// ErrorResponse builds the answer for a failed request.
func ErrorResponse(err error) Response {
	return Response{V: Version, Error: err.Error(), Code: CodeOf(err)}
}
