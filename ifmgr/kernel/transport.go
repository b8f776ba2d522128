package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// How mdlayher/netlink v1.11.2 handles what ifmgr cares about, read from its
// source (conn.go, conn_linux.go, message.go, errors.go):
//
//   - NLM_F_DUMP_INTR: the library never looks at it. There is no
//     ErrDumpInterrupted; the flag stays in Header.Flags of the messages that
//     carry it (netlink.DumpInterrupted). But Conn.Receive / Execute /
//     ReceiveIter swallow the NLMSG_DONE that ends a dump
//     (lockedReceiveIter returns on Done|Multi without yielding it), and the
//     kernel's netlink_dump_done calls nl_dump_check_consistent on exactly
//     that NLMSG_DONE: a change that lands after the last link message is
//     flagged ONLY on the DONE, which the library throws away. So Conn reads
//     its replies itself (recvDatagram below, through SyscallConn().Read and
//     the runtime poller) and looks at the flag on every message, DONE
//     included.
//   - Errors: an NLMSG_ERROR (or a DONE with a negative errno) becomes
//     *netlink.OpError{Op: "receive", Err: syscall.Errno, Message, Offset};
//     Message/Offset come from the extended ack TLVs (NLMSGERR_ATTR_MSG/OFFS)
//     when the kernel set NLM_F_ACK_TLVS, which it does only when the socket
//     has NETLINK_EXT_ACK (Config.Strict sets it, plus NETLINK_GET_STRICT_CHK).
//     OpError.Error() prints the extack text. Since Conn does its own
//     receiving it builds the same *netlink.OpError in parseError, so callers
//     can errors.As it and the text survives.
//   - ENOBUFS on a multicast socket: the kernel reports an overrun as sk_err on
//     the next recvmsg. The library's Receive first peeks (MSG_PEEK|MSG_TRUNC)
//     to size its buffer; that recvmsg fails and Receive returns
//     &OpError{Op: "receive", Err: os.NewSyscallError("recvmsg", ENOBUFS)},
//     so errors.Is(err, unix.ENOBUFS) holds. The error is reported once and
//     the socket keeps working; the queued messages follow. The library's
//     NoENOBUFS option (NETLINK_NO_ENOBUFS) would hide overruns: never set.
//   - Close: Conn.Close takes no lock and closes the descriptor; a Receive
//     blocked in the runtime poller returns at once with a "use of closed
//     file" error (tested in watch_test.go).

// recvDatagram reads one netlink datagram into c.buf (grown as needed) and
// returns it; the result is valid until the next call. It peeks first with
// MSG_TRUNC to learn the datagram's size, so a large dump batch is never
// truncated.
func (c *Conn) recvDatagram() ([]byte, error) {
	var (
		n    int
		rerr error
	)
	err := c.rc.Read(func(fd uintptr) bool {
		for {
			n, _, rerr = unix.Recvfrom(int(fd), nil, unix.MSG_PEEK|unix.MSG_TRUNC)
			if rerr == unix.EINTR {
				continue
			}
			if rerr == unix.EAGAIN {
				return false // wait in the poller
			}
			if rerr != nil {
				return true
			}
			if n > len(c.buf) {
				c.buf = make([]byte, nlAlign(n))
			}
			for {
				n, _, rerr = unix.Recvfrom(int(fd), c.buf, 0)
				if rerr != unix.EINTR {
					return true
				}
			}
		}
	})
	if err != nil {
		return nil, &netlink.OpError{Op: "receive", Err: err}
	}
	if rerr != nil {
		return nil, &netlink.OpError{Op: "receive", Err: fmt.Errorf("recvfrom: %w", rerr)}
	}
	return c.buf[:n], nil
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

const nlmsgHeaderLen = 16

// parseDatagram splits one datagram into messages. Data fields alias b.
func parseDatagram(b []byte) ([]netlink.Message, error) {
	var msgs []netlink.Message
	for len(b) >= nlmsgHeaderLen {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < nlmsgHeaderLen || l > len(b) {
			return nil, fmt.Errorf("netlink message length %d, %d bytes left", l, len(b))
		}
		al := nlAlign(l)
		if al > len(b) {
			al = len(b) // the last message of a datagram may lack padding
		}
		var m netlink.Message
		m.Header.Length = uint32(l)
		m.Header.Type = netlink.HeaderType(binary.NativeEndian.Uint16(b[4:6]))
		m.Header.Flags = netlink.HeaderFlags(binary.NativeEndian.Uint16(b[6:8]))
		m.Header.Sequence = binary.NativeEndian.Uint32(b[8:12])
		m.Header.PID = binary.NativeEndian.Uint32(b[12:16])
		m.Data = b[nlmsgHeaderLen:l]
		msgs = append(msgs, m)
		b = b[al:]
	}
	return msgs, nil
}

// parseError decodes the errno of an NLMSG_ERROR, or of an NLMSG_DONE that
// ends a dump, with its extended ack. It returns nil for an ack (errno 0).
//
// NLMSG_ERROR payload: struct nlmsgerr { int error; struct nlmsghdr msg; }
// followed by the request's payload unless NLM_F_CAPPED, then, with
// NLM_F_ACK_TLVS, NLMSGERR_ATTR_* attributes. NLMSG_DONE payload: int error,
// then the TLVs.
func parseError(m netlink.Message) error {
	if len(m.Data) < 4 {
		return &netlink.OpError{Op: "receive", Err: errors.New("short netlink error message"), Sequence: m.Header.Sequence}
	}
	code := int32(binary.NativeEndian.Uint32(m.Data[0:4]))
	if code == 0 {
		return nil
	}
	if code < 0 {
		code = -code
	}
	oe := &netlink.OpError{Op: "receive", Err: syscall.Errno(code), Sequence: m.Header.Sequence}
	if m.Header.Flags&netlink.AcknowledgeTLVs == 0 {
		return oe
	}
	off := 4
	if m.Header.Type == netlink.Error {
		if len(m.Data) < 4+nlmsgHeaderLen {
			return oe
		}
		if m.Header.Flags&netlink.Capped != 0 {
			off += nlmsgHeaderLen
		} else {
			off += nlAlign(int(binary.NativeEndian.Uint32(m.Data[4:8])))
		}
	}
	if off >= len(m.Data) {
		return oe
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[off:])
	if err != nil {
		return oe
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.NLMSGERR_ATTR_MSG:
			oe.Message = ad.String()
		case unix.NLMSGERR_ATTR_OFFS:
			oe.Offset = int(ad.Uint32())
		}
	}
	return oe
}

// exchange sends req and reads replies for it until the request is complete:
// for a dump, the NLMSG_DONE; otherwise the ack (requests always carry
// NLM_F_ACK). Each reply message that is neither an error nor the DONE is
// passed to fn (its Data aliases the receive buffer: decode, do not keep).
// Messages of other sequence numbers or ports, left over from an earlier
// exchange that failed half way, are skipped. interrupted reports whether any
// message of the reply, the DONE included, carried NLM_F_DUMP_INTR.
//
// The caller holds c.mu.
func (c *Conn) exchange(req netlink.Message, fn func(netlink.Message) error) (interrupted bool, err error) {
	// NLM_F_DUMP (ROOT|MATCH) shares its bits with NLM_F_REPLACE|NLM_F_EXCL:
	// only a GET is a dump.
	dump := req.Header.Type == unix.RTM_GETLINK && req.Header.Flags&netlink.Dump == netlink.Dump
	if !dump {
		req.Header.Flags |= netlink.Acknowledge
	}
	sent, err := c.nl.Send(req)
	if err != nil {
		return false, err
	}
	return c.collect(sent.Header.Sequence, sent.Header.PID, dump, fn)
}

// collect is the receiving half of exchange, for the request with sequence
// number seq sent from port pid.
func (c *Conn) collect(seq, pid uint32, dump bool, fn func(netlink.Message) error) (interrupted bool, err error) {
	var fnErr error
	for {
		b, err := c.recvDatagram()
		if err != nil {
			return interrupted, err
		}
		msgs, err := parseDatagram(b)
		if err != nil {
			return interrupted, &netlink.OpError{Op: "receive", Err: err}
		}
		for _, m := range msgs {
			if m.Header.Sequence != seq || m.Header.PID != pid {
				continue
			}
			if m.Header.Flags&netlink.DumpInterrupted != 0 {
				interrupted = true
			}
			switch m.Header.Type {
			case netlink.Error:
				// An ack (errno 0) ends a plain request; an error ends
				// either kind.
				if err := parseError(m); err != nil {
					return interrupted, err
				}
				if !dump {
					return interrupted, fnErr
				}
			case netlink.Done:
				if err := parseError(m); err != nil {
					return interrupted, err
				}
				return interrupted, fnErr
			case netlink.Noop:
			default:
				if fnErr == nil {
					fnErr = fn(m)
				}
			}
		}
	}
}
