package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"unsafe"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// scriptedWire is a kernel on the other end of a pipeline: it answers each
// request with what answer returns (reply messages, then an ack or error;
// the ack of success only if the request asked for one, as netlink_rcv_skb
// does), in datagrams shaped by the test, and records the datagrams sent.
type scriptedWire struct {
	pid, seq uint32
	sent     [][]netlink.Message
	queue    [][]byte
	// answer returns the messages that answer req: the ack (or error) last.
	answer func(req netlink.Message) []netlink.Message
	// shape arranges one sendmsg's answers into datagrams (default: one
	// message per datagram, in order, as the kernel sends them).
	shape func(answers [][]netlink.Message) [][]netlink.Message
	// failRecv, if set, is returned by the recv after that many datagrams
	// of the current send were read (the kernel dropped the rest: ENOBUFS).
	failAfter int
	failRecv  error
	read      int
}

func (w *scriptedWire) sendBatch(msgs []netlink.Message) ([]netlink.Message, error) {
	out := slices.Clone(msgs)
	var answers [][]netlink.Message
	for i := range out {
		w.seq++
		out[i].Header.Sequence, out[i].Header.PID = w.seq, w.pid
		a := w.answer(out[i])
		if k := len(a) - 1; k >= 0 && out[i].Header.Flags&netlink.Acknowledge == 0 && a[k].Header.Type == netlink.Error && parseError(a[k]) == nil {
			a = a[:k] // success, and no ack asked for
		}
		answers = append(answers, a)
	}
	w.sent = append(w.sent, out)
	shape := w.shape
	if shape == nil {
		shape = func(a [][]netlink.Message) (d [][]netlink.Message) {
			for _, ms := range a {
				for _, m := range ms {
					d = append(d, []netlink.Message{m})
				}
			}
			return d
		}
	}
	w.queue, w.read = nil, 0
	for _, dg := range shape(answers) {
		var b []byte
		for _, m := range dg {
			b = append(b, marshal(m)...)
		}
		w.queue = append(w.queue, b)
	}
	return out, nil
}

func (w *scriptedWire) recv() ([]byte, error) {
	if w.failRecv != nil && w.read == w.failAfter {
		w.queue = nil // what the kernel dropped never comes
		w.read++
		return nil, w.failRecv
	}
	if len(w.queue) == 0 {
		return nil, errors.New("test wire: read with nothing queued (the pipeline waits for a reply that cannot come)")
	}
	b := w.queue[0]
	w.queue = w.queue[1:]
	w.read++
	return b, nil
}

func marshal(m netlink.Message) []byte {
	b := make([]byte, nlmsgHeaderLen, nlAlign(nlmsgHeaderLen+len(m.Data)))
	binary.NativeEndian.PutUint32(b[0:4], uint32(nlmsgHeaderLen+len(m.Data)))
	binary.NativeEndian.PutUint16(b[4:6], uint16(m.Header.Type))
	binary.NativeEndian.PutUint16(b[6:8], uint16(m.Header.Flags))
	binary.NativeEndian.PutUint32(b[8:12], m.Header.Sequence)
	binary.NativeEndian.PutUint32(b[12:16], m.Header.PID)
	b = append(b, m.Data...)
	return b[:cap(b)]
}

// ackOf is the kernel's NLMSG_ERROR for req: errno 0 is an ack; text, if
// any, travels as the extended ack (NLM_F_CAPPED|NLM_F_ACK_TLVS).
func ackOf(req netlink.Message, errno syscall.Errno, text string) netlink.Message {
	data := make([]byte, 4+nlmsgHeaderLen)
	binary.NativeEndian.PutUint32(data[0:4], uint32(-int32(errno)))
	copy(data[4:], marshal(netlink.Message{Header: req.Header})[:nlmsgHeaderLen])
	flags := netlink.Capped
	if text != "" {
		ae := netlink.NewAttributeEncoder()
		ae.String(unix.NLMSGERR_ATTR_MSG, text)
		tlv, _ := ae.Encode()
		data = append(data, tlv...)
		flags |= netlink.AcknowledgeTLVs
	}
	return netlink.Message{Header: netlink.Header{Type: netlink.Error, Flags: flags, Sequence: req.Header.Sequence, PID: req.Header.PID}, Data: data}
}

// reqs makes n requests whose payload is their number, so the scripted
// kernel knows which one it answers.
func numbered(n int) []netlink.Message {
	out := make([]netlink.Message, n)
	for i := range out {
		out[i] = netlink.Message{Header: netlink.Header{Type: unix.RTM_SETLINK, Flags: netlink.Request}, Data: []byte{byte(i), 0, 0, 0}}
	}
	return out
}

type outcome struct {
	replies []string
	err     error
	dones   int
}

func runScripted(w *scriptedWire, reqs []netlink.Message, window int) []outcome {
	out := make([]outcome, len(reqs))
	pipeline(w, reqs, window, nil, func(j int, m netlink.Message) {
		out[j].replies = append(out[j].replies, string(m.Data))
	}, func(j int, err error) {
		out[j].err = err
		out[j].dones++
	})
	return out
}

// TestPipelineMatching: replies are matched to requests by sequence number
// whatever the order and packing of the datagrams, stray messages (another
// sequence number, another port) are skipped, an error in the middle is its
// request's alone with its extended ack, and the window bounds each sendmsg.
func TestPipelineMatching(t *testing.T) {
	const n, window = 8, 3
	w := &scriptedWire{pid: 77, answer: func(req netlink.Message) []netlink.Message {
		i := req.Data[0]
		echo := netlink.Message{Header: netlink.Header{Type: unix.RTM_NEWLINK, Sequence: req.Header.Sequence, PID: req.Header.PID}, Data: []byte(fmt.Sprintf("echo %d", i))}
		switch i {
		case 2:
			return []netlink.Message{ackOf(req, unix.EEXIST, "")}
		case 4:
			return []netlink.Message{ackOf(req, unix.EINVAL, "Device can not be enslaved while up")}
		case 6:
			return []netlink.Message{ackOf(req, 0, "")} // a change without a reply: a SETLINK
		}
		return []netlink.Message{echo, ackOf(req, 0, "")}
	}}
	// The kernel answers in order, one message per datagram; this one packs
	// a send's answers into one datagram, last request first, with strays.
	w.shape = func(a [][]netlink.Message) [][]netlink.Message {
		var dg []netlink.Message
		dg = append(dg, netlink.Message{Header: netlink.Header{Type: unix.RTM_NEWLINK, Sequence: 9999, PID: 77}, Data: []byte("stale")})
		for i := len(a) - 1; i >= 0; i-- {
			dg = append(dg, a[i]...)
		}
		dg = append(dg, netlink.Message{Header: netlink.Header{Type: netlink.Error, Sequence: w.seq, PID: 78}, Data: make([]byte, 20)})
		return [][]netlink.Message{dg}
	}
	out := runScripted(w, numbered(n), window)

	if got := len(w.sent); got != 3 {
		t.Errorf("%d sendmsg calls for %d requests with window %d, want 3", got, n, window)
	}
	for k, s := range w.sent {
		if len(s) > window {
			t.Errorf("send %d carried %d requests, window %d", k, len(s), window)
		}
		for i, m := range s {
			if acked := m.Header.Flags&netlink.Acknowledge != 0; acked != (i == len(s)-1) {
				t.Errorf("send %d, request %d of %d: NLM_F_ACK %v; want it on the last request only", k, i, len(s), acked)
			}
		}
	}
	for i, o := range out {
		if o.dones != 1 {
			t.Errorf("request %d: done called %d times", i, o.dones)
		}
		switch i {
		case 2:
			if !errors.Is(o.err, unix.EEXIST) || len(o.replies) != 0 {
				t.Errorf("request 2: err %v, replies %q; want EEXIST alone", o.err, o.replies)
			}
		case 4:
			var oe *netlink.OpError
			if !errors.As(o.err, &oe) || oe.Err != unix.EINVAL || oe.Message != "Device can not be enslaved while up" {
				t.Errorf("request 4: err %#v, want EINVAL with its extack text", o.err)
			}
		case 6:
			if o.err != nil || len(o.replies) != 0 {
				t.Errorf("request 6: err %v, replies %q; want success without a reply", o.err, o.replies)
			}
		default:
			if o.err != nil || !slices.Equal(o.replies, []string{fmt.Sprintf("echo %d", i)}) {
				t.Errorf("request %d: err %v, replies %q; want its own echo and success", i, o.err, o.replies)
			}
		}
	}
}

// TestPipelineLostReplies: when the socket reports that replies were
// dropped (ENOBUFS), the requests still waiting are done with that error
// (their outcome is unknown; the replies read before it were passed on),
// and the next window goes on normally.
func TestPipelineLostReplies(t *testing.T) {
	w := &scriptedWire{pid: 5, answer: func(req netlink.Message) []netlink.Message {
		if req.Data[0]%2 == 0 {
			echo := netlink.Message{Header: netlink.Header{Type: unix.RTM_NEWLINK, Sequence: req.Header.Sequence, PID: req.Header.PID}, Data: []byte(fmt.Sprintf("echo %d", req.Data[0]))}
			return []netlink.Message{echo, ackOf(req, 0, "")}
		}
		return []netlink.Message{ackOf(req, 0, "")}
	}}
	// The first window's answers are echo 0, echo 2, the ack of 3: the
	// socket fails after the two echoes.
	w.failAfter, w.failRecv = 2, &netlink.OpError{Op: "receive", Err: unix.ENOBUFS}
	out := runScripted(w, numbered(6), 4)
	for i, o := range out {
		if o.dones != 1 {
			t.Errorf("request %d: done called %d times", i, o.dones)
		}
		lost := i < 4
		if lost != errors.Is(o.err, unix.ENOBUFS) || !lost && o.err != nil {
			t.Errorf("request %d: err %v (lost: %v)", i, o.err, lost)
		}
		if echoed := i%2 == 0; echoed != (len(o.replies) == 1) {
			t.Errorf("request %d: replies %q", i, o.replies)
		}
	}
}

// rmemAlloc is the receive memory queued on c's socket (SO_MEMINFO).
func rmemAlloc(t *testing.T, c *Conn) int {
	var info [9]uint32 // SK_MEMINFO_VARS; SK_MEMINFO_RMEM_ALLOC is 0
	var err error
	cerr := c.rc.Control(func(fd uintptr) {
		l := uint32(unsafe.Sizeof(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, fd, unix.SOL_SOCKET, unix.SO_MEMINFO, uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
		if e != 0 {
			err = e
		}
	})
	if cerr != nil || err != nil {
		t.Fatalf("SO_MEMINFO: %v %v", cerr, err)
	}
	return int(info[0])
}

// meteredWire is a Conn's own wire that notes, after each sendmsg, how
// much of the receive buffer the kernel's answers took.
type meteredWire struct {
	*Conn
	t    *testing.T
	peak int // bytes per request, worst send
}

func (m *meteredWire) sendBatch(msgs []netlink.Message) ([]netlink.Message, error) {
	sent, err := m.Conn.sendBatch(msgs)
	if err == nil {
		m.peak = max(m.peak, rmemAlloc(m.t, m.Conn)/len(msgs))
	}
	return sent, err
}

// TestBatchKernel runs batches against the real kernel: creates with a
// taken name, a bad name, a link that is gone and a refused join among
// them (each failure its request's alone, with its meaning: ErrExists,
// ErrBadName, ErrNotFound, the extack text), spanning several windows;
// then joins and ups in one message; then the group's links deleted in one
// RTM_DELLINK. A full window's echoes fit the receive buffer (the budget
// the window is sized by holds on this kernel).
func TestBatchKernel(t *testing.T) {
	c := dial(t)
	run := runSeq.Add(1)
	group := uint32(0x7b000000 + run)
	name := func(i int) string { return fmt.Sprintf("tbt%d.%d", run, i) }
	taken := name(99)
	deleteLater(t, c, taken)
	if _, err := c.CreateBridge(taken, group); err != nil {
		t.Fatal(err)
	}
	t.Logf("window %d (receive buffer %d bytes)", c.window, growRcvBuf(c.rc))
	if c.window < 16 {
		t.Errorf("window %d: the socket did not get its receive buffer", c.window)
	}

	var ops []Op
	const bridges = 20
	for i := range bridges {
		ops = append(ops, CreateBridgeOp(name(i), group, BridgeOptions{}, true))
	}
	const (
		atTaken   = 5
		atBadName = 9
		atGone    = 12
		atRefused = 15
	)
	ops = slices.Insert(ops, atTaken, CreateBridgeOp(taken, group, BridgeOptions{}, true))
	ops = slices.Insert(ops, atBadName, CreateBridgeOp("bad name", group, BridgeOptions{}, true))
	ops = slices.Insert(ops, atGone, SetUpOp(1<<30, true))
	tk := mustLink(t, c, taken)
	ops = slices.Insert(ops, atRefused, SetMasterOp(tk.Index, tk.Index)) // a bridge into itself
	c.window = 7                                                         // several datagrams
	res := c.Batch(ops)
	c.window = windowFor(growRcvBuf(c.rc))

	var made []Link
	for i, r := range res {
		switch i {
		case atTaken:
			var oe *netlink.OpError
			if !errors.Is(r.Err, ErrExists) || !errors.As(r.Err, &oe) || !strings.Contains(r.Err.Error(), taken) {
				t.Errorf("create of a taken name: %v, want ErrExists with the kernel's error and the name", r.Err)
			}
		case atBadName:
			if !errors.Is(r.Err, ErrBadName) {
				t.Errorf("create of a bad name: %v, want ErrBadName", r.Err)
			}
		case atGone:
			if !errors.Is(r.Err, ErrNotFound) {
				t.Errorf("up of a missing link: %v, want ErrNotFound", r.Err)
			}
		case atRefused:
			var oe *netlink.OpError
			if !errors.As(r.Err, &oe) || oe.Message == "" {
				t.Errorf("bridge into itself: %v, want the kernel's refusal with its extack", r.Err)
			}
		default:
			if r.Err != nil {
				t.Errorf("%s: %v", ops[i], r.Err)
				continue
			}
			l := r.Link
			if l.Name != ops[i].Name || l.Index == 0 || l.Group != group || l.Kind != KindBridge || l.Flags&unix.IFF_UP == 0 {
				t.Errorf("%s: got %+v, want the new bridge, up, group %#x", ops[i], l, group)
			}
			made = append(made, l)
		}
	}
	if len(made) != bridges {
		t.Fatalf("%d bridges made, want %d", len(made), bridges)
	}
	links, err := c.Links()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range made {
		if k, ok := find(links, l.Name); !ok || k.Index != l.Index {
			t.Errorf("%s (%d) not in the kernel: %+v", l.Name, l.Index, k)
		}
	}

	// Gets, pipelined: each answer to its own op, a missing link ErrNotFound
	// without disturbing the gets around it.
	gets := []Op{GetLinkOp(made[0].Index), GetLinkOp(1 << 30), GetLinkOp(made[1].Index), GetLinkOp(0)}
	got := c.Batch(gets)
	for i, want := range []Link{made[0], {}, made[1], {}} {
		r := got[i]
		switch {
		case i == 1 && !errors.Is(r.Err, ErrNotFound):
			t.Errorf("get of a missing link: %v, want ErrNotFound", r.Err)
		case i == 3 && (r.Err == nil || errors.Is(r.Err, ErrNotFound)):
			t.Errorf("get of ifindex 0: %v, want bad input", r.Err)
		case want.Index != 0 && (r.Err != nil || r.Link.Index != want.Index || r.Link.Name != want.Name):
			t.Errorf("%s: %+v %v, want %s", gets[i], r.Link, r.Err, want.Name)
		}
	}

	// Joins and ups in one message each, aliases, in one batch.
	run2 := fmt.Sprintf("tbv%d", run)
	var joins []Op
	for i := range 3 {
		createVeth(t, c, fmt.Sprintf("%sa%d", run2, i), fmt.Sprintf("%sb%d", run2, i), 0)
		v := mustLink(t, c, fmt.Sprintf("%sa%d", run2, i))
		joins = append(joins, JoinUpOp(v.Index, made[i].Index), SetAliasOp(made[i].Index, fmt.Sprintf("alias %d", i)))
	}
	for i, r := range c.Batch(joins) {
		if r.Err != nil {
			t.Errorf("%s: %v", joins[i], r.Err)
		}
	}
	for i := range 3 {
		v := mustLink(t, c, fmt.Sprintf("%sa%d", run2, i))
		if v.Master != made[i].Index || v.Flags&unix.IFF_UP == 0 {
			t.Errorf("%s: master %d flags %#x, want master %d and up", v.Name, v.Master, v.Flags, made[i].Index)
		}
		if b := mustLink(t, c, made[i].Name); b.Alias != fmt.Sprintf("alias %d", i) {
			t.Errorf("%s: alias %q", b.Name, b.Alias)
		}
	}

	// A full window of creates: every echo fits the receive buffer.
	var full []Op
	for i := range c.window {
		full = append(full, CreateBridgeOp(name(100+i), group, BridgeOptions{}, true))
	}
	mw := &meteredWire{Conn: c, t: t}
	reqs := make([]netlink.Message, len(full))
	for i, o := range full {
		if reqs[i], err = o.request(); err != nil {
			t.Fatal(err)
		}
	}
	ok := 0
	c.mu.Lock()
	pipeline(mw, reqs, c.window, nil, func(int, netlink.Message) {}, func(j int, err error) {
		if err != nil {
			t.Errorf("%s: %v", full[j], err)
			return
		}
		ok++
	})
	c.mu.Unlock()
	t.Logf("%d creates in one window: %d bytes of receive buffer per request (budget %d)", len(full), mw.peak, replyBudget)
	if ok != len(full) || mw.peak > replyBudget {
		t.Errorf("%d of %d creates answered, %d bytes per request queued (budget %d)", ok, len(full), mw.peak, replyBudget)
	}

	// The whole group in one RTM_DELLINK.
	if r := c.one(DeleteGroupOp(group)); r.Err != nil {
		t.Fatal(r.Err)
	}
	links, err = c.Links()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range links {
		if l.Group == group {
			t.Errorf("%s still there after its group's delete", l.Name)
		}
	}
	if v := mustLink(t, c, run2+"a0"); v.Master != 0 {
		t.Errorf("port still has master %d after its bridge went", v.Master)
	}
	if r := c.one(DeleteGroupOp(group)); !errors.Is(r.Err, ErrNotFound) {
		t.Errorf("delete of an empty group: %v, want ErrNotFound", r.Err)
	}
}

// A request marked withNext shares its datagram with the next one: the
// datagram that would split them ends one request early; every request
// is still answered once, and each datagram's last request carries the ack.
func TestPipelineKeepsWithNextTogether(t *testing.T) {
	w := &scriptedWire{pid: 9, answer: func(req netlink.Message) []netlink.Message {
		return []netlink.Message{ackOf(req, 0, "")}
	}}
	reqs := numbered(10)
	withNext := make([]bool, len(reqs))
	withNext[3], withNext[5], withNext[8] = true, true, true // pairs 3-4, 5-6, 8-9
	dones := make([]int, len(reqs))
	pipeline(w, reqs, 4, withNext, func(int, netlink.Message) {}, func(j int, err error) {
		if err != nil {
			t.Errorf("request %d: %v", j, err)
		}
		dones[j]++
	})
	var sizes []int
	for _, dg := range w.sent {
		sizes = append(sizes, len(dg))
		for k, m := range dg {
			if acked := m.Header.Flags&netlink.Acknowledge != 0; acked != (k == len(dg)-1) {
				t.Errorf("datagram %v: request %d ack flag %v", sizes, k, acked)
			}
		}
	}
	// 0-2 (3 would leave 4 behind), 3-6, 7-9.
	if want := []int{3, 4, 3}; !slices.Equal(sizes, want) {
		t.Errorf("datagrams of %v requests, want %v", sizes, want)
	}
	for j, n := range dones {
		if n != 1 {
			t.Errorf("request %d done %d times", j, n)
		}
	}
}
