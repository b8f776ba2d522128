// Package qmp is a small client for QEMU's machine protocol (QMP): JSON
// objects over a unix socket, one command at a time or many in flight.
//
// A Client has one reader goroutine. It hands each reply to the Execute call
// whose "id" it carries and keeps every asynchronous event in a buffer, so an
// event that arrives before WaitEvent is called is not lost. Close stops the
// reader and waits for it.
package qmp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"
	"time"
)

// maxEvents bounds the event buffer; the oldest event is dropped beyond it.
const maxEvents = 1024

// ErrClosed is returned by calls on a client whose connection has ended.
var ErrClosed = errors.New("qmp: connection closed")

// Error is a QMP error reply: {"error": {"class": ..., "desc": ...}}.
type Error struct {
	Command string // the command that failed
	Class   string // e.g. "GenericError", "CommandNotFound"
	Desc    string // QEMU's human-readable description
}

func (e *Error) Error() string {
	return fmt.Sprintf("qmp: %s: %s", e.Command, e.Desc)
}

// Event is one asynchronous QMP event.
type Event struct {
	Name string          `json:"event"`
	Data json.RawMessage `json:"data,omitempty"`
}

// message is anything QEMU sends: greeting, reply or event.
type message struct {
	QMP    json.RawMessage `json:"QMP"`
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
	Event string          `json:"event"`
	Data  json.RawMessage `json:"data"`
	ID    json.RawMessage `json:"id"`
}

type reply struct {
	ret json.RawMessage
	err *Error // Command is filled in by Execute
}

// Client is a QMP connection. Its methods may be called from several
// goroutines at once.
type Client struct {
	conn     net.Conn
	dec      *json.Decoder
	greeting json.RawMessage

	wmu sync.Mutex // serialises writes

	mu      sync.Mutex
	nextID  uint64
	pending map[string]chan reply
	events  []Event
	notify  chan struct{} // closed (and replaced) when an event arrives
	readErr error         // why the reader stopped; set before done closes

	done       chan struct{} // closed when the reader stops
	readerDone chan struct{} // closed when the reader goroutine has returned
	closeOnce  sync.Once
	closeErr   error
}

// Dial connects to the QMP socket at path, reads QEMU's greeting and
// negotiates capabilities (qmp_capabilities), after which QEMU accepts
// commands. ctx bounds the whole handshake.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return nil, fmt.Errorf("qmp: %w", err)
	}
	c := &Client{
		conn:       conn,
		dec:        json.NewDecoder(conn),
		pending:    map[string]chan reply{},
		notify:     make(chan struct{}),
		done:       make(chan struct{}),
		readerDone: make(chan struct{}),
	}

	// The greeting is read before the reader starts; a cancelled ctx
	// unblocks the read by expiring the deadline.
	stop := context.AfterFunc(ctx, func() { conn.SetReadDeadline(time.Unix(1, 0)) })
	var g message
	err = c.dec.Decode(&g)
	if !stop() {
		conn.Close()
		return nil, fmt.Errorf("qmp: reading greeting: %w", ctx.Err())
	}
	if err == nil && g.QMP == nil {
		err = errors.New("not a QMP greeting")
	}
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("qmp: reading greeting: %w", err)
	}
	c.greeting = g.QMP

	go c.read()
	if _, err := c.Execute(ctx, "qmp_capabilities", nil); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// Greeting returns the "QMP" member of QEMU's greeting (version and
// capabilities).
func (c *Client) Greeting() json.RawMessage { return c.greeting }

// read is the reader goroutine: it demultiplexes replies by id and buffers
// events until the connection ends.
func (c *Client) read() {
	defer close(c.readerDone)
	var err error
	for {
		var m message
		if err = c.dec.Decode(&m); err != nil {
			break
		}
		switch {
		case m.Event != "":
			c.mu.Lock()
			if len(c.events) >= maxEvents {
				c.events = c.events[1:]
			}
			c.events = append(c.events, Event{Name: m.Event, Data: m.Data})
			close(c.notify)
			c.notify = make(chan struct{})
			c.mu.Unlock()
		case m.ID != nil:
			var r reply
			if m.Error != nil {
				r.err = &Error{Class: m.Error.Class, Desc: m.Error.Desc}
			} else {
				r.ret = m.Return
			}
			c.mu.Lock()
			ch := c.pending[string(m.ID)]
			delete(c.pending, string(m.ID))
			c.mu.Unlock()
			if ch != nil {
				ch <- r // buffered, never blocks
			}
		}
		// Anything else (a reply without id, which this client never
		// asks for) is ignored.
	}
	c.mu.Lock()
	c.readErr = fmt.Errorf("%w: %v", ErrClosed, err)
	c.pending = nil
	c.mu.Unlock()
	close(c.done)
}

// Execute runs one QMP command and returns its "return" value. args is
// marshalled as the command's "arguments" (nil for none). A QMP error reply
// comes back as *Error, whose Desc is QEMU's description.
func (c *Client) Execute(ctx context.Context, cmd string, args any) (json.RawMessage, error) {
	req := struct {
		Execute   string `json:"execute"`
		Arguments any    `json:"arguments,omitempty"`
		ID        string `json:"id"`
	}{Execute: cmd, Arguments: args}

	ch := make(chan reply, 1)
	c.mu.Lock()
	if c.pending == nil {
		err := c.readErr
		c.mu.Unlock()
		return nil, err
	}
	c.nextID++
	req.ID = "uroute-" + strconv.FormatUint(c.nextID, 10)
	key, _ := json.Marshal(req.ID)
	c.pending[string(key)] = ch
	c.mu.Unlock()
	forget := func() {
		c.mu.Lock()
		if c.pending != nil {
			delete(c.pending, string(key))
		}
		c.mu.Unlock()
	}

	b, err := json.Marshal(req)
	if err != nil {
		forget()
		return nil, fmt.Errorf("qmp: %s: %w", cmd, err)
	}
	if err := c.write(ctx, b); err != nil {
		forget()
		return nil, fmt.Errorf("qmp: %s: %w", cmd, err)
	}

	select {
	case r := <-ch:
		return r.result(cmd)
	case <-ctx.Done():
		forget()
		return nil, fmt.Errorf("qmp: %s: %w", cmd, ctx.Err())
	case <-c.done:
		// The reply may have come in just before the connection ended
		// (QEMU closes the socket right after answering "quit").
		select {
		case r := <-ch:
			return r.result(cmd)
		default:
		}
		return nil, fmt.Errorf("qmp: %s: %w", cmd, c.readErr)
	}
}

func (r reply) result(cmd string) (json.RawMessage, error) {
	if r.err != nil {
		r.err.Command = cmd
		return nil, r.err
	}
	return r.ret, nil
}

func (c *Client) write(ctx context.Context, b []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	dl, _ := ctx.Deadline() // zero: no deadline
	if err := c.conn.SetWriteDeadline(dl); err != nil {
		return err
	}
	_, err := c.conn.Write(append(b, '\n'))
	return err
}

// WaitEvent waits for an event called name for which match (nil: any)
// returns true, and removes it from the buffer. Events received since Dial
// and not yet taken by a WaitEvent are searched first, oldest first, so an
// event that came before the call is found. After the connection ends,
// buffered events can still be waited for.
func (c *Client) WaitEvent(ctx context.Context, name string, match func(data json.RawMessage) bool) error {
	for {
		c.mu.Lock()
		for i, e := range c.events {
			if e.Name == name && (match == nil || match(e.Data)) {
				c.events = append(c.events[:i:i], c.events[i+1:]...)
				c.mu.Unlock()
				return nil
			}
		}
		notify := c.notify
		c.mu.Unlock()

		select {
		case <-notify:
		case <-ctx.Done():
			return fmt.Errorf("qmp: waiting for event %s: %w", name, ctx.Err())
		case <-c.done:
			// One last look: the event may have come with the
			// connection's last bytes.
			c.mu.Lock()
			for i, e := range c.events {
				if e.Name == name && (match == nil || match(e.Data)) {
					c.events = append(c.events[:i:i], c.events[i+1:]...)
					c.mu.Unlock()
					return nil
				}
			}
			c.mu.Unlock()
			return fmt.Errorf("qmp: waiting for event %s: %w", name, c.readErr)
		}
	}
}

// Events returns a copy of the buffered events not yet taken by WaitEvent.
func (c *Client) Events() []Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Event(nil), c.events...)
}

// Close closes the connection and waits for the reader goroutine to return.
// Calls waiting in Execute or WaitEvent return ErrClosed. It is safe to call
// more than once; later calls return the first call's result.
func (c *Client) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.conn.Close()
		<-c.readerDone
	})
	return c.closeErr
}

// NIC is a virtio-net NIC whose netdev is a port of a QEMU hub: no host
// side, no outside address.
type NIC struct {
	ID     string // device id
	Netdev string // netdev id
	MAC    string
	Hub    int    // hub id
	Bus    string // a free PCIe root port (q35 and virt: pcie-root-port)
}

// PlugNIC hot-plugs n: netdev_add of a hub port, then device_add of a
// virtio-net-pci without an option ROM (romfile=). If device_add fails
// the netdev is removed again, so the same plug can be retried.
func (c *Client) PlugNIC(ctx context.Context, n NIC) error {
	if _, err := c.Execute(ctx, "netdev_add", map[string]any{
		"type": "hubport", "id": n.Netdev, "hubid": n.Hub,
	}); err != nil {
		return err
	}
	if _, err := c.Execute(ctx, "device_add", map[string]any{
		"driver": "virtio-net-pci", "id": n.ID, "netdev": n.Netdev,
		"bus": n.Bus, "mac": n.MAC, "romfile": "",
	}); err != nil {
		if _, err2 := c.Execute(ctx, "netdev_del", map[string]any{"id": n.Netdev}); err2 != nil {
			return fmt.Errorf("%w (and removing netdev %s again: %v)", err, n.Netdev, err2)
		}
		return fmt.Errorf("%w (netdev %s removed again)", err, n.Netdev)
	}
	return nil
}

// UnplugNIC removes n: device_del only asks the guest (its pciehp must
// agree), so it waits for DEVICE_DELETED naming n.ID in data.device, then
// removes the netdev. QEMU may have sent that event twice for an earlier
// unplug of the same id; a stale one still buffered is dropped first so
// it cannot end this wait.
func (c *Client) UnplugNIC(ctx context.Context, n NIC) error {
	isID := func(data json.RawMessage) bool {
		var d struct {
			Device string `json:"device"`
		}
		return json.Unmarshal(data, &d) == nil && d.Device == n.ID
	}
	// A done context only searches the buffer.
	done, stop := context.WithCancel(ctx)
	stop()
	for c.WaitEvent(done, "DEVICE_DELETED", isID) == nil {
	}
	if _, err := c.Execute(ctx, "device_del", map[string]any{"id": n.ID}); err != nil {
		return err
	}
	if err := c.WaitEvent(ctx, "DEVICE_DELETED", isID); err != nil {
		return fmt.Errorf("%w (the guest has not released %s; it may still, later)", err, n.ID)
	}
	_, err := c.Execute(ctx, "netdev_del", map[string]any{"id": n.Netdev})
	return err
}
