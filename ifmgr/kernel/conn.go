package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"github.com/uroute/uroute/ifmgr/ifname"
	"golang.org/x/sys/unix"
)

// Errors callers test with errors.Is. The kernel's own error stays in the
// chain too: errors.As(err, new(*netlink.OpError)) finds it, with the
// extended-ack text in OpError.Message (also part of err.Error()).
var (
	// ErrExists: the kernel answered EEXIST to a create, the name is taken.
	ErrExists = errors.New("link already exists")
	// ErrNotFound: the kernel answered ENODEV, the link is gone (on a get,
	// set or delete) or, on a create, the parent link is.
	ErrNotFound = errors.New("link not found")
	// ErrDumpInterrupted: every attempt of a link dump was flagged
	// NLM_F_DUMP_INTR (the link set changed while it was being read).
	ErrDumpInterrupted = errors.New("link dump interrupted by concurrent changes")
	// ErrBadName: not a valid interface name (ifname.Valid, the kernel's
	// dev_valid_name); checked before any kernel call. The same value as
	// ifname.ErrBadName and ifmgr.ErrBadName.
	ErrBadName = ifname.ErrBadName
)

// dumpAttempts is how many times Links tries a dump that keeps coming back
// with NLM_F_DUMP_INTR before it gives up with ErrDumpInterrupted.
const dumpAttempts = 5

// Conn is one rtnetlink socket for requests: dumps, gets and changes. Its
// methods are safe for concurrent use but run one request at a time.
type Conn struct {
	mu  sync.Mutex
	nl  *netlink.Conn
	rc  syscall.RawConn
	buf []byte
	// window is how many requests of a Batch may be in flight, from the
	// receive buffer the socket got (windowFor).
	window int

	// dumpHook, if set (tests), sees the NLM_F_DUMP_INTR verdict of every
	// dump attempt.
	dumpHook func(interrupted bool)
}

// Dial opens the request socket. It is Strict: NETLINK_EXT_ACK (the kernel's
// error text reaches the returned errors) and NETLINK_GET_STRICT_CHK.
func Dial() (*Conn, error) {
	nl, err := netlink.Dial(unix.NETLINK_ROUTE, &netlink.Config{Strict: true})
	if err != nil {
		return nil, fmt.Errorf("dial rtnetlink: %w", err)
	}
	rc, err := nl.SyscallConn()
	if err != nil {
		_ = nl.Close()
		return nil, fmt.Errorf("dial rtnetlink: %w", err)
	}
	return &Conn{nl: nl, rc: rc, buf: make([]byte, 32<<10), window: windowFor(growRcvBuf(rc))}, nil
}

// growRcvBuf asks for a receive buffer of wantRcvBuf (SO_RCVBUFFORCE, which
// CAP_NET_ADMIN allows past net.core.rmem_max, else SO_RCVBUF, capped there)
// and returns what the socket has. A batch's replies arrive all at once:
// the window depends on it. The memory is the kernel's, charged only while
// replies wait.
func growRcvBuf(rc syscall.RawConn) int {
	got := 0
	_ = rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, wantRcvBuf) != nil {
			_ = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, wantRcvBuf)
		}
		got, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	return got
}

// Close closes the socket.
func (c *Conn) Close() error { return c.nl.Close() }

// Links dumps all links (RTM_GETLINK, NLM_F_DUMP). A dump the kernel flags
// NLM_F_DUMP_INTR is thrown away and retried; after dumpAttempts such
// attempts Links returns ErrDumpInterrupted.
func (c *Conn) Links() ([]Link, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	var links []Link
	err := c.retryDump("dump links", func() (intr bool, err error) {
		links, intr, err = c.dumpLinks()
		return intr, err
	})
	if err != nil {
		return nil, err
	}
	return links, nil
}

// retryDump runs attempt, one whole dump that starts its result afresh,
// until the kernel does not flag it NLM_F_DUMP_INTR (a dump that raced a
// change may have skipped or repeated entries), at most dumpAttempts
// times; then ErrDumpInterrupted. Errors are wrapped with what. The
// caller holds c.mu.
func (c *Conn) retryDump(what string, attempt func() (interrupted bool, err error)) error {
	for range dumpAttempts {
		intr, err := attempt()
		if c.dumpHook != nil {
			c.dumpHook(intr)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		if !intr {
			return nil
		}
	}
	return fmt.Errorf("%s: %w (%d attempts)", what, ErrDumpInterrupted, dumpAttempts)
}

func (c *Conn) dumpLinks() ([]Link, bool, error) {
	req, err := linkRequest(unix.RTM_GETLINK, netlink.Request|netlink.Dump, rtnetlink.LinkMessage{}, nil)
	if err != nil {
		return nil, false, err
	}
	var links []Link
	intr, err := c.exchange(req, func(m netlink.Message) error {
		if m.Header.Type != unix.RTM_NEWLINK {
			return nil
		}
		if fam, ok := linkFamily(m.Data); !ok || fam != unix.AF_UNSPEC {
			return nil
		}
		l, err := decode(m.Data)
		if err != nil {
			return err
		}
		links = append(links, l)
		return nil
	})
	return links, intr, err
}

// LinkByName gets one link by name; ErrNotFound if there is none.
func (c *Conn) LinkByName(name string) (Link, error) {
	if err := checkName(name); err != nil {
		return Link{}, fmt.Errorf("get link %q: %w", name, err)
	}
	l, err := c.getLink(rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{Name: name}})
	if err != nil {
		return Link{}, wrap(err, "get link %q", name)
	}
	return l, nil
}

// LinkByIndex gets one link by ifindex; ErrNotFound if there is none.
func (c *Conn) LinkByIndex(index uint32) (Link, error) {
	l, err := c.getLink(rtnetlink.LinkMessage{Index: index})
	if err != nil {
		return Link{}, wrap(err, "get link %d", index)
	}
	return l, nil
}

func (c *Conn) getLink(lm rtnetlink.LinkMessage) (Link, error) {
	req, err := linkRequest(unix.RTM_GETLINK, netlink.Request, lm, nil)
	if err != nil {
		return Link{}, err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var (
		l     Link
		found bool
	)
	_, err = c.exchange(req, func(m netlink.Message) error {
		if m.Header.Type != unix.RTM_NEWLINK || found {
			return nil
		}
		var err error
		l, err = decode(m.Data)
		found = err == nil
		return err
	})
	if err == nil && !found {
		err = errors.New("kernel sent no link")
	}
	return l, err
}

// CreateBridge creates a bridge with IFLA_GROUP = group in the same
// RTM_NEWLINK (NLM_F_CREATE|NLM_F_EXCL), so the ownership marker is there from
// the link's first moment, and already up: IFF_UP in the message's
// ifi_flags/ifi_change (createRequest), so no RTM_SETLINK follows. Opening a
// bridge cannot fail for want of a lower link. ErrExists if the name is
// taken. It returns the new link as the kernel reports it. It is
// CreateBridgeWith(name, group, BridgeOptions{}): no VLAN filtering.
func (c *Conn) CreateBridge(name string, group uint32) (Link, error) {
	return c.CreateBridgeWith(name, group, BridgeOptions{})
}

// CreateVLAN creates an 802.1Q VLAN vid on the link parent (IFLA_LINK), with
// IFLA_GROUP = group set at creation, not up (a VLAN whose parent is down
// fails to open, ENETDOWN, and the kernel would then undo the whole create).
// The VLAN ID is checked (1..4094, ErrBadVID) before anything is sent. The
// kind's IFLA_INFO_DATA travels as an unregistered-driver
// rtnetlink.LinkData holding EncodeVLANData's bytes. It returns the new link
// as the kernel reports it (its NLM_F_ECHO, or a get on kernels without).
func (c *Conn) CreateVLAN(name string, parent uint32, vid uint16, group uint32) (Link, error) {
	r := c.one(CreateVLANOp(name, parent, vid, group))
	return r.Link, r.Err
}

// SetAlias sets IFLA_IFALIAS (at most 255 bytes); "" removes the alias.
// ErrNotFound if the link is gone.
func (c *Conn) SetAlias(index uint32, alias string) error {
	return c.one(SetAliasOp(index, alias)).Err
}

// SetUp sets or clears IFF_UP. ErrNotFound if the link is gone.
func (c *Conn) SetUp(index uint32, up bool) error {
	return c.one(SetUpOp(index, up)).Err
}

// SetMaster makes link index a port of master (IFLA_MASTER); master 0
// releases it. ErrNotFound if the link is gone (a missing master is EINVAL).
func (c *Conn) SetMaster(index, master uint32) error {
	return c.one(SetMasterOp(index, master)).Err
}

// Delete deletes a link (RTM_DELLINK). ErrNotFound if it is already gone.
func (c *Conn) Delete(index uint32) error {
	return c.one(DeleteOp(index)).Err
}

// set sends one RTM_SETLINK for an existing link.
func (c *Conn) set(lm rtnetlink.LinkMessage, extra func(*netlink.AttributeEncoder)) error {
	req, err := linkRequest(unix.RTM_SETLINK, netlink.Request, lm, extra)
	if err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err = c.exchange(req, ignore)
	return err
}

func ignore(netlink.Message) error { return nil }

// linkRequest marshals lm with rtnetlink (ifinfomsg with ifi_family
// AF_UNSPEC, plus the attributes rtnetlink knows how to encode) and appends
// the attributes extra encodes, for those rtnetlink cannot.
func linkRequest(typ netlink.HeaderType, flags netlink.HeaderFlags, lm rtnetlink.LinkMessage, extra func(*netlink.AttributeEncoder)) (netlink.Message, error) {
	b, err := lm.MarshalBinary()
	if err != nil {
		return netlink.Message{}, err
	}
	if extra != nil {
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.NativeEndian
		extra(ae)
		eb, err := ae.Encode()
		if err != nil {
			return netlink.Message{}, err
		}
		b = append(b, eb...)
	}
	return netlink.Message{Header: netlink.Header{Type: typ, Flags: flags}, Data: b}, nil
}

// wrap adds context to a kernel error and maps EEXIST and ENODEV to
// ErrExists and ErrNotFound, keeping the *netlink.OpError in the chain.
func wrap(err error, format string, args ...any) error {
	if err == nil {
		return nil
	}
	what := fmt.Sprintf(format, args...)
	switch {
	case errors.Is(err, unix.EEXIST):
		return fmt.Errorf("%s: %w: %w", what, ErrExists, err)
	case errors.Is(err, unix.ENODEV):
		return fmt.Errorf("%s: %w: %w", what, ErrNotFound, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// checkName applies the kernel's dev_valid_name rules (ifname.Valid), so a
// bad name fails here and not as a policy error, or a name the kernel would
// mangle.
func checkName(name string) error { return ifname.Valid(name) }
