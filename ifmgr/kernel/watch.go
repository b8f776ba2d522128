package kernel

import (
	"errors"
	"fmt"
	"os"
	"sync/atomic"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// EventType says what an Event reports.
type EventType int

const (
	// EventNew: an RTM_NEWLINK, a link appeared or changed (renames
	// included: the event carries the new name under the same Index).
	EventNew EventType = iota + 1
	// EventDel: an RTM_DELLINK, the link is gone.
	EventDel
	// EventResync: events were lost (the receive buffer overran: ENOBUFS) or
	// a message could not be decoded. The receiver must dump again
	// (Conn.Links) and converge on the dump; Link is empty.
	EventResync
	// EventVLAN: an AF_BRIDGE RTM_NEWLINK/RTM_DELLINK, the bridge VLAN
	// membership of Link.Index (a port, or a bridge's own side) may have
	// changed, or the link joined or left a bridge; re-read it
	// (Conn.BridgeVLANs). Link is sparse: Index, Name, Master and Flags
	// are set, Kind, Group and the rest are not (the AF_UNSPEC EventNew
	// has them).
	EventVLAN
)

func (t EventType) String() string {
	switch t {
	case EventNew:
		return "new"
	case EventDel:
		return "del"
	case EventResync:
		return "resync"
	case EventVLAN:
		return "vlan"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one link notification.
type Event struct {
	Type   EventType
	Link   Link
	Reason string // why, for EventResync
}

// DefaultReadBuffer is the watcher's receive buffer when WatchOptions leaves
// it 0.
const DefaultReadBuffer = 4 << 20

// ErrClosed is returned by Receive once the Watcher is closed.
var ErrClosed = errors.New("watcher closed")

// WatchOptions tunes Watch.
type WatchOptions struct {
	// ReadBuffer is the socket receive buffer in bytes (0: DefaultReadBuffer).
	// The kernel doubles it for bookkeeping and enforces a minimum.
	ReadBuffer int
	// NoForce uses plain SO_RCVBUF, capped by net.core.rmem_max, instead of
	// trying SO_RCVBUFFORCE (root/CAP_NET_ADMIN only, no cap) first. Tests
	// that want a small buffer that overflows set it.
	NoForce bool
}

// Watcher receives RTNLGRP_LINK notifications on its own socket. Open it
// BEFORE the initial Conn.Links dump: a change made during the dump is then
// both in the socket queue and (maybe) in the dump, never in neither.
// Events repeat what the dump may already show; apply them idempotently.
//
// Receive is meant to run in one goroutine of its own that forwards events to
// their owner; Close, from any goroutine, unblocks it.
type Watcher struct {
	nl     *netlink.Conn
	closed atomic.Bool
	rcvbuf int
	// overrun: an ENOBUFS was read and the queue is not yet drained (see
	// drainOverrun); only the Receive goroutine touches it.
	overrun bool
}

// Watch opens the notification socket: joins RTNLGRP_LINK and sets the
// receive buffer. It never sets NETLINK_NO_ENOBUFS (netlink.NoENOBUFS):
// that hides overruns, and ifmgr would silently miss links.
func Watch(opts WatchOptions) (*Watcher, error) {
	size := opts.ReadBuffer
	if size <= 0 {
		size = DefaultReadBuffer
	}
	nl, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		return nil, fmt.Errorf("watch links: %w", err)
	}
	w := &Watcher{nl: nl}
	if err := w.setReadBuffer(size, !opts.NoForce); err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("watch links: receive buffer %d: %w", size, err)
	}
	if err := nl.JoinGroup(unix.RTNLGRP_LINK); err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("watch links: join RTNLGRP_LINK: %w", err)
	}
	return w, nil
}

// setReadBuffer sets SO_RCVBUFFORCE when force (falling back to SO_RCVBUF
// without the privilege) or SO_RCVBUF, then reads back what the kernel took.
// (netlink.Conn.SetReadBuffer exists too, but always tries SO_RCVBUFFORCE.)
func (w *Watcher) setReadBuffer(size int, force bool) error {
	rc, err := w.nl.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		if force {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size)
			if serr == nil {
				return
			}
		}
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return err
	}
	w.rcvbuf, err = w.nl.ReadBuffer()
	return err
}

// ReadBuffer reports the receive buffer the kernel granted (SO_RCVBUF as read
// back: twice the request, capped by rmem_max unless forced).
func (w *Watcher) ReadBuffer() int { return w.rcvbuf }

// Receive blocks until at least one event is available and returns the
// events of one datagram, in order. An overrun (ENOBUFS) and an undecodable
// message each become one EventResync, not an error; the Watcher stays
// usable. The overrun's resync comes only once the socket's queue is
// drained (drainOverrun), so a dump made on it sees every change whose
// event was lost. Receive returns an error wrapping ErrClosed after Close, and other
// socket errors as they come (the Watcher may then still be used).
// RTM_NEWLINK/RTM_DELLINK of family AF_UNSPEC are EventNew/EventDel. Those
// of family AF_BRIDGE, the bridge's per-port (and, for its own side,
// per-bridge) notifications, are EventVLAN and never EventNew/EventDel: the
// kernel sends one when a port joins or leaves (an AF_BRIDGE RTM_DELLINK
// means "no longer a port", not "gone"; the master change also arrives as an
// AF_UNSPEC RTM_NEWLINK, which carries IFLA_MASTER), when its port state
// changes, and after every bridge VLAN membership change, whether made with
// RTM_SETLINK/RTM_DELLINK AF_BRIDGE or RTM_NEWVLAN/RTM_DELVLAN
// (br_ifinfo_notify, called by both). So RTNLGRP_LINK alone reports every
// membership change, and RTNLGRP_BRVLAN is not joined: it would report each
// change twice, and its only extra messages are per-VLAN option changes
// (STP state, multicast) that ifmgr does not manage. Other messages are
// dropped.
func (w *Watcher) Receive() ([]Event, error) {
	for {
		if w.closed.Load() {
			return nil, ErrClosed
		}
		if w.overrun {
			return w.drainOverrun()
		}
		msgs, err := w.nl.Receive()
		if err != nil {
			if w.closed.Load() {
				return nil, fmt.Errorf("receive link events: %w (%v)", ErrClosed, err)
			}
			if errors.Is(err, unix.ENOBUFS) {
				w.overrun = true
				return w.drainOverrun()
			}
			var serr *os.SyscallError
			if errors.As(err, &serr) || errors.Is(err, os.ErrClosed) {
				return nil, fmt.Errorf("receive link events: %w", err)
			}
			// Not a socket error: the library could not parse the datagram
			// (short, misaligned or truncated message). Its events are lost.
			return []Event{{Type: EventResync, Reason: "undecodable datagram: " + err.Error()}}, nil
		}
		if evs := eventsOf(msgs); len(evs) > 0 {
			return evs, nil
		}
	}
}

// overrunDrainMax bounds the datagrams one Receive discards after an
// overrun, so that a flood that never pauses still yields a resync now and
// then; the drain goes on in the next Receive.
const overrunDrainMax = 4096

// drainOverrun discards what the socket has queued, without blocking, and
// returns the overrun's resync once the queue was found empty.
//
// Why not report the resync at once: after an overrun the kernel marks the
// socket congested and drops every later notification WITHOUT another
// ENOBUFS until a receive finds the queue empty (af_netlink.c:
// netlink_overrun sets NETLINK_S_CONGESTED and sk_err once; only
// netlink_rcv_wake, on an empty queue, clears it). A resync reported while
// stale messages were still queued let the receiver dump too early, and a
// change made between that dump and the end of the drain was lost silently:
// no event until the periodic resync (TestWatchResyncAfterDrain; the
// TestWatchOverrun hangs in the TCG guests). The empty read that ends the
// drain clears the congestion, so from the resync on every change is
// either delivered or reported by a new ENOBUFS. The discarded messages
// are older than the dump the resync asks for, which covers them.
func (w *Watcher) drainOverrun() ([]Event, error) {
	const reason = "receive buffer overrun (ENOBUFS): link events lost"
	rc, err := w.nl.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("receive link events: %w", err)
	}
	var buf [64]byte // MSG_TRUNC: the datagram is consumed whatever its size
	for range overrunDrainMax {
		var rerr error
		err := rc.Read(func(fd uintptr) bool {
			for {
				_, _, rerr = unix.Recvfrom(int(fd), buf[:], unix.MSG_DONTWAIT|unix.MSG_TRUNC)
				if rerr != unix.EINTR {
					return true // never wait in the poller: EAGAIN ends the drain
				}
			}
		})
		switch {
		case w.closed.Load():
			return nil, fmt.Errorf("receive link events: %w", ErrClosed)
		case err != nil:
			return nil, fmt.Errorf("receive link events: %w", err)
		case rerr == unix.EAGAIN:
			w.overrun = false
			return []Event{{Type: EventResync, Reason: reason}}, nil
		case rerr == unix.ENOBUFS:
			// Overrun again while draining: the same resync covers it.
		case rerr != nil:
			return nil, fmt.Errorf("receive link events: drain after overrun: %w", os.NewSyscallError("recvfrom", rerr))
		}
	}
	// Still not empty: report now (the receiver's dump is not yet final),
	// and drain on in the next Receive, which reports again.
	return []Event{{Type: EventResync, Reason: reason + " (a flood: still draining)"}}, nil
}

// eventsOf turns one datagram's messages into events.
func eventsOf(msgs []netlink.Message) []Event {
	var evs []Event
	var resync string
	for _, m := range msgs {
		var typ EventType
		switch m.Header.Type {
		case unix.RTM_NEWLINK:
			typ = EventNew
		case unix.RTM_DELLINK:
			typ = EventDel
		default:
			continue
		}
		fam, ok := linkFamily(m.Data)
		if ok && fam == unix.AF_BRIDGE {
			typ = EventVLAN
		} else if ok && fam != unix.AF_UNSPEC {
			continue
		}
		l, err := decode(m.Data)
		if err != nil {
			if resync == "" {
				resync = "undecodable link message: " + err.Error()
			}
			continue
		}
		evs = append(evs, Event{Type: typ, Link: l})
	}
	if resync != "" {
		evs = append(evs, Event{Type: EventResync, Reason: resync})
	}
	return evs
}

// Close closes the socket and unblocks a Receive in progress.
func (w *Watcher) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	return w.nl.Close()
}
