// Command uroute-probe sends and receives raw Ethernet frames on one link
// with AF_PACKET, for the QEMU tests (qemu-test/) that check uroute's VLANs
// on a running image.
//
//	uroute-probe send [-n N] [-vid V] [-netns NS] IFACE [MARKER]
//	uroute-probe recv [-netns NS] IFACE MARKER TIMEOUT-SECONDS
//	uroute-probe spawn OUTFILE PROG [ARG...]
//	uroute-probe netns NS MAC...
//	uroute-probe links [-netns NS]
//
// spawn starts a background job for the tests and reports its pid (see
// spawnMain). netns makes a named network namespace and moves the links
// with the given MACs into it, up; -netns NS runs send, recv or links
// there; links lists "IFACE MAC" (see netnsMain).
//
// send writes N (default 5) broadcast frames of EtherType 0x88b5 (IEEE
// local experimental) whose payload is "uroute-probe:MARKER", 100 ms apart.
// They are untagged unless -vid V puts an 802.1Q tag with VLAN id V in the
// frame itself (a frame as a tagged switch port's far end sends it); on a
// VLAN link an untagged frame is tagged by the kernel on the parent.
// Without MARKER, one is made up and printed.
//
// recv prints "probe: listening on IFACE" once its socket is bound, then
// waits for a frame carrying MARKER and prints
//
//	probe: received MARKER on IFACE vid=V
//
// and exits 0; on timeout it prints "probe: timeout ..." and exits 1.
// V is the 802.1Q VLAN id of the frame as received: from PACKET_AUXDATA's
// tp_vlan_tci when the kernel took the tag out of the frame (VLAN
// acceleration; the usual case), from the frame itself when the tag is
// still inline, or "none" for an untagged frame.
package main

import (
	"bytes"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

const (
	etherType = 0x88b5 // IEEE 802 local experimental EtherType 1
	prefix    = "uroute-probe:"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "send":
		err = sendMain(os.Args[2:])
	case "recv":
		err = recvMain(os.Args[2:])
	case "spawn":
		err = spawnMain(os.Args[2:])
	case "netns":
		err = netnsMain(os.Args[2:])
	case "links":
		err = linksMain(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "probe: %v\n", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, `usage: uroute-probe send [-n N] [-vid V] [-netns NS] IFACE [MARKER]
       uroute-probe recv [-netns NS] IFACE MARKER TIMEOUT-SECONDS
       uroute-probe spawn OUTFILE PROG [ARG...]
       uroute-probe netns NS MAC...
       uroute-probe links [-netns NS]`)
	os.Exit(2)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// open returns an AF_PACKET socket bound to ifname, receiving every protocol.
func open(ifname string) (int, *net.Interface, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return -1, nil, err
	}
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
	if err != nil {
		return -1, nil, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
		unix.Close(fd)
		return -1, nil, fmt.Errorf("bind %s: %w", ifname, err)
	}
	return fd, ifi, nil
}

func sendMain(args []string) error {
	fs := flag.NewFlagSet("send", flag.ExitOnError)
	n := fs.Int("n", 5, "number of frames")
	vlanID := fs.Int("vid", 0, "802.1Q VLAN id to tag the frames with (0: untagged)")
	nsName := netnsFlag(fs)
	_ = fs.Parse(args)
	if fs.NArg() < 1 || fs.NArg() > 2 {
		usage()
	}
	if *vlanID < 0 || *vlanID > 4094 {
		return fmt.Errorf("-vid %d: out of range 0-4094", *vlanID)
	}
	if err := enterNetns(*nsName); err != nil {
		return err
	}
	ifname := fs.Arg(0)
	marker := fs.Arg(1)
	if marker == "" {
		marker = fmt.Sprintf("m%d-%d", os.Getpid(), time.Now().UnixNano())
	}
	fd, ifi, err := open(ifname)
	if err != nil {
		return err
	}
	defer unix.Close(fd)

	frame := make([]byte, 0, 64)
	frame = append(frame, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff) // broadcast
	src := ifi.HardwareAddr
	if len(src) != 6 {
		src = net.HardwareAddr{0x02, 0, 0, 0, 0, 1}
	}
	frame = append(frame, src...)
	if *vlanID != 0 {
		frame = binary.BigEndian.AppendUint16(frame, 0x8100)
		frame = binary.BigEndian.AppendUint16(frame, uint16(*vlanID))
	}
	frame = binary.BigEndian.AppendUint16(frame, etherType)
	frame = append(frame, prefix+marker...)
	for len(frame) < 60 { // minimum Ethernet frame without FCS
		frame = append(frame, 0)
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(etherType), Ifindex: ifi.Index, Halen: 6}
	copy(to.Addr[:], frame[:6])
	for i := 0; i < *n; i++ {
		if i > 0 {
			time.Sleep(100 * time.Millisecond)
		}
		if err := unix.Sendto(fd, frame, 0, to); err != nil {
			return fmt.Errorf("send on %s: %w", ifname, err)
		}
	}
	tag := "untagged"
	if *vlanID != 0 {
		tag = fmt.Sprintf("vid=%d", *vlanID)
	}
	fmt.Printf("probe: sent %d frames %s on %s %s\n", *n, marker, ifname, tag)
	return nil
}

func recvMain(args []string) error {
	fs := flag.NewFlagSet("recv", flag.ExitOnError)
	nsName := netnsFlag(fs)
	_ = fs.Parse(args)
	if fs.NArg() != 3 {
		usage()
	}
	ifname, marker := fs.Arg(0), fs.Arg(1)
	secs, err := strconv.ParseFloat(fs.Arg(2), 64)
	if err != nil || secs <= 0 {
		return fmt.Errorf("bad timeout %q", fs.Arg(2))
	}
	if err := enterNetns(*nsName); err != nil {
		return err
	}
	fd, _, err := open(ifname)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.SetsockoptInt(fd, unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
		return fmt.Errorf("PACKET_AUXDATA: %w", err)
	}
	tv := unix.NsecToTimeval(int64(200 * time.Millisecond))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("SO_RCVTIMEO: %w", err)
	}
	fmt.Printf("probe: listening on %s\n", ifname)

	want := []byte(prefix + marker)
	buf := make([]byte, 65536)
	oob := make([]byte, 256)
	deadline := time.Now().Add(time.Duration(secs * float64(time.Second)))
	for time.Now().Before(deadline) {
		n, oobn, _, from, err := unix.Recvmsg(fd, buf, oob, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("recv on %s: %w", ifname, err)
		}
		if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
			continue // our own transmissions
		}
		frame := buf[:n]
		if !bytes.Contains(frame, want) {
			continue
		}
		fmt.Printf("probe: received %s on %s vid=%s\n", marker, ifname, vid(frame, oob[:oobn]))
		return nil
	}
	fmt.Printf("probe: timeout after %gs waiting for %s on %s\n", secs, marker, ifname)
	os.Exit(1)
	return nil
}

// vid reports the frame's 802.1Q VLAN id: out of band (PACKET_AUXDATA)
// first, then an inline tag, else "none".
func vid(frame, oob []byte) string {
	msgs, _ := unix.ParseSocketControlMessage(oob)
	for _, m := range msgs {
		if m.Header.Level != unix.SOL_PACKET || m.Header.Type != unix.PACKET_AUXDATA {
			continue
		}
		if len(m.Data) < int(unsafe.Sizeof(unix.TpacketAuxdata{})) {
			continue
		}
		aux := (*unix.TpacketAuxdata)(unsafe.Pointer(&m.Data[0]))
		if aux.Status&unix.TP_STATUS_VLAN_VALID != 0 {
			return strconv.Itoa(int(aux.Vlan_tci & 0x0fff))
		}
	}
	if len(frame) >= 16 {
		if t := binary.BigEndian.Uint16(frame[12:14]); t == 0x8100 || t == 0x88a8 {
			return strconv.Itoa(int(binary.BigEndian.Uint16(frame[14:16])&0x0fff)) + " (inline)"
		}
	}
	return "none"
}
