package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"time"

	"github.com/uroute/uroute/ifmgr"
)

// DefaultSocket is where a router's ifmgrd listens.
const DefaultSocket = "/run/ifmgr.sock"

// Client is one connection to ifmgrd. It is not safe for concurrent use:
// open one per goroutine (the daemon serialises them anyway).
type Client struct {
	conn net.Conn
	br   *bufio.Reader
	enc  *json.Encoder
}

// Dial connects to the daemon's socket.
func Dial(path string) (*Client, error) {
	c, err := net.DialTimeout("unix", path, 5*time.Second)
	if err != nil {
		return nil, fmt.Errorf("connect to ifmgrd at %s: %w", path, err)
	}
	return &Client{conn: c, br: bufio.NewReader(c), enc: json.NewEncoder(c)}, nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

// Do sends one request and reads its answer. A daemon-side failure comes
// back as a *RemoteError that unwraps to the ifmgr error value.
func (c *Client) Do(req Request) (Response, error) {
	req.V = Version
	sendErr := c.enc.Encode(req)
	var resp Response
	// Even if the send failed, the daemon may have answered why (a refused
	// peer) before closing: read that first.
	line, err := c.br.ReadBytes('\n')
	if err != nil {
		if sendErr != nil {
			return resp, fmt.Errorf("send to ifmgrd: %w", sendErr)
		}
		return resp, fmt.Errorf("read from ifmgrd: %w", err)
	}
	if err := json.Unmarshal(line, &resp); err != nil {
		return resp, fmt.Errorf("bad answer from ifmgrd: %w", err)
	}
	if resp.Error != "" {
		return resp, &RemoteError{Code: resp.Code, Msg: resp.Error}
	}
	return resp, nil
}

// Create asks for an interface and returns what was made.
func (c *Client) Create(name, dev string, vid int) (ifmgr.Info, error) {
	resp, err := c.Do(Request{Op: OpCreate, Name: name, Dev: dev, VID: vid})
	if err != nil {
		return ifmgr.Info{}, err
	}
	if resp.Info == nil {
		return ifmgr.Info{}, fmt.Errorf("%w: create answered without info", ErrProtocol)
	}
	return *resp.Info, nil
}

// Destroy deletes a managed interface.
func (c *Client) Destroy(name string) error {
	_, err := c.Do(Request{Op: OpDestroy, Name: name})
	return err
}

// List returns the managed interfaces.
func (c *Client) List() ([]ifmgr.Info, error) {
	resp, err := c.Do(Request{Op: OpList})
	return resp.List, err
}

// Status returns the daemon's counters.
func (c *Client) Status() (ifmgr.Status, error) {
	resp, err := c.Do(Request{Op: OpStatus})
	if err != nil || resp.Status == nil {
		return ifmgr.Status{}, err
	}
	return *resp.Status, nil
}

// Resync asks the daemon to re-read the kernel.
func (c *Client) Resync() error {
	_, err := c.Do(Request{Op: OpResync})
	return err
}

// Reload asks the daemon to re-read its board profile; with dryRun it only
// answers the plan.
func (c *Client) Reload(dryRun bool) ([]string, error) {
	resp, err := c.Do(Request{Op: OpReload, DryRun: dryRun})
	return resp.Plan, err
}

// Pipelined is one item of a pipeline: a request to send or, if Err is
// set, a failure found before sending (a line the client could not parse),
// answered Err in its turn and never sent.
type Pipelined struct {
	Req Request
	Err error
}

// DefaultWindow is how many requests a pipeline keeps unanswered.
const DefaultWindow = 128

// Pipeline sends the items next yields, in order, without waiting for each
// answer: at most window (<= 0: DefaultWindow) are unanswered at a time,
// which bounds both sides' memory. It hands every answer, in item order,
// to answer (err as Do returns it) and stops early, closing the
// connection, when answer returns false. Once next reports no more items,
// the connection's write side is shut, so the daemon answers what it read
// and closes. The daemon reads ahead and queues pipelined creates and
// destroys together: those it finds queued at once share one DB commit.
// The Client is not usable after Pipeline.
func (c *Client) Pipeline(next func() (Pipelined, bool), window int, answer func(Response, error) bool) error {
	if window <= 0 {
		window = DefaultWindow
	}
	inflight := make(chan Pipelined, window)
	stop := make(chan struct{})
	sendErr := make(chan error, 1)
	go func() {
		defer close(inflight)
		// One write per request, unbuffered: the receiver may be waiting
		// for the answer to the one just written while next blocks (a
		// batch read from a terminal or a pipe).
		enc := json.NewEncoder(c.conn)
		for {
			it, ok := next()
			if !ok {
				var err error
				if uc, isUnix := c.conn.(*net.UnixConn); isUnix {
					err = uc.CloseWrite()
				}
				sendErr <- err
				return
			}
			if it.Err == nil {
				it.Req.V = Version
				if err := enc.Encode(it.Req); err != nil {
					sendErr <- err
					return
				}
			}
			select {
			case inflight <- it:
			case <-stop:
				return
			}
		}
	}()
	defer close(stop)
	for it := range inflight {
		if it.Err != nil {
			if !answer(Response{}, it.Err) {
				c.conn.Close()
				return nil
			}
			continue
		}
		var resp Response
		line, err := c.br.ReadBytes('\n')
		if err != nil {
			c.conn.Close()
			select {
			case serr := <-sendErr:
				if serr != nil {
					return fmt.Errorf("send to ifmgrd: %w", serr)
				}
			default:
			}
			return fmt.Errorf("read from ifmgrd: %w", err)
		}
		if err := json.Unmarshal(line, &resp); err != nil {
			c.conn.Close()
			return fmt.Errorf("bad answer from ifmgrd: %w", err)
		}
		var rerr error
		if resp.Error != "" {
			rerr = &RemoteError{Code: resp.Code, Msg: resp.Error}
		}
		if !answer(resp, rerr) {
			c.conn.Close()
			return nil
		}
	}
	if err := <-sendErr; err != nil {
		return fmt.Errorf("send to ifmgrd: %w", err)
	}
	return nil
}
