package main

import (
	"encoding/binary"
	"flag"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// netnsDir is where named network namespaces are kept, as ip-netns(8)
// keeps them: a bind mount of the namespace's nsfs file holds it alive
// with no process in it.
const netnsDir = "/run/netns"

func init() {
	// Every subcommand that takes -netns enters the namespace on the main
	// goroutine's thread and then opens its sockets there: a socket
	// belongs to the namespace of the thread that created it, so the
	// goroutine must not move to another thread.
	runtime.LockOSThread()
}

// netnsFlag adds -netns to a subcommand's flags.
func netnsFlag(fs *flag.FlagSet) *string {
	return fs.String("netns", "", "work in the named network namespace (made by \"uroute-probe netns\")")
}

// enterNetns moves the calling thread (the main one, locked) into the
// named namespace; "" is the current one.
func enterNetns(name string) error {
	if name == "" {
		return nil
	}
	f, err := os.Open(filepath.Join(netnsDir, name))
	if err != nil {
		return fmt.Errorf("netns %s: %w", name, err)
	}
	defer f.Close()
	if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("setns %s: %w", name, err)
	}
	return nil
}

// netnsMain is "uroute-probe netns NAME MAC...": it makes the network
// namespace NAME, moves the links with those MACs into it and brings them
// (and its loopback) up, the links promiscuous, and prints "probe: netns
// NAME: IFACE MAC" for each. The QEMU tests put the probes' own NICs there, so that the
// router's bridges, ifmgrd and the router's stack never see them: each
// probe NIC shares a QEMU hub with one bridge port, and is that port's
// far end of the wire.
func netnsMain(args []string) error {
	if len(args) < 2 {
		usage()
	}
	name, macs := args[0], args[1:]
	if name == "" || strings.ContainsAny(name, "/.") {
		return fmt.Errorf("netns: bad name %q", name)
	}
	var links []net.Interface
	all, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, m := range macs {
		hw, err := net.ParseMAC(m)
		if err != nil {
			return fmt.Errorf("netns: %w", err)
		}
		found := false
		for _, l := range all {
			if l.HardwareAddr.String() == hw.String() {
				links, found = append(links, l), true
				break
			}
		}
		if !found {
			return fmt.Errorf("netns: no link with MAC %s", hw)
		}
	}

	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return err
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_RDONLY, 0o444)
	if err != nil {
		return fmt.Errorf("netns: %w", err)
	}
	f.Close()
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		os.Remove(path)
		return fmt.Errorf("netns: unshare: %w", err)
	}
	if err := unix.Mount("/proc/thread-self/ns/net", path, "", unix.MS_BIND, ""); err != nil {
		os.Remove(path)
		return fmt.Errorf("netns: bind %s: %w", path, err)
	}
	// Back in the original namespace to send the links away.
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("netns: back to the original namespace: %w", err)
	}
	ns, err := os.Open(path)
	if err != nil {
		return err
	}
	defer ns.Close()
	for _, l := range links {
		if err := moveLink(l.Index, int(ns.Fd())); err != nil {
			return fmt.Errorf("netns: move %s to %s: %w", l.Name, name, err)
		}
	}
	if err := enterNetns(name); err != nil {
		return err
	}
	if err := setFlags("lo", unix.IFF_UP); err != nil {
		return fmt.Errorf("netns %s: lo up: %w", name, err)
	}
	for _, ifname := range names(links) {
		// Promiscuous: the far end of a wire hears every frame on it. A
		// virtio-net NIC (QEMU's VIRTIO_NET_F_CTRL_VLAN filter) otherwise
		// drops every tagged frame whose VID the guest has not
		// registered on it, and a probe registers none.
		if err := setFlags(ifname, unix.IFF_UP|unix.IFF_PROMISC); err != nil {
			return fmt.Errorf("netns %s: %s up: %w", name, ifname, err)
		}
	}
	for _, l := range links {
		fmt.Printf("probe: netns %s: %s %s\n", name, l.Name, l.HardwareAddr)
	}
	return nil
}

func names(ls []net.Interface) []string {
	var out []string
	for _, l := range ls {
		out = append(out, l.Name)
	}
	return out
}

// linksMain is "uroute-probe links [-netns NAME]": one line "IFACE MAC"
// per link, for the tests to find a NIC by its MAC.
func linksMain(args []string) error {
	fs := flag.NewFlagSet("links", flag.ExitOnError)
	nsName := netnsFlag(fs)
	_ = fs.Parse(args)
	if err := enterNetns(*nsName); err != nil {
		return err
	}
	ls, err := net.Interfaces()
	if err != nil {
		return err
	}
	for _, l := range ls {
		fmt.Printf("%s %s\n", l.Name, l.HardwareAddr)
	}
	return nil
}

// moveLink sends the link with index into the network namespace nsfd
// (RTM_NEWLINK with IFLA_NET_NS_FD, as "ip link set IFACE netns NAME").
func moveLink(index, nsfd int) error {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	const hdr = unix.SizeofNlMsghdr + unix.SizeofIfInfomsg
	msg := make([]byte, hdr+8)
	ne := binary.NativeEndian
	ne.PutUint32(msg[0:], uint32(len(msg)))
	ne.PutUint16(msg[4:], unix.RTM_NEWLINK)
	ne.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	ne.PutUint32(msg[8:], 1) // sequence
	ifi := (*unix.IfInfomsg)(unsafe.Pointer(&msg[unix.SizeofNlMsghdr]))
	ifi.Family = unix.AF_UNSPEC
	ifi.Index = int32(index)
	ne.PutUint16(msg[hdr:], 8)
	ne.PutUint16(msg[hdr+2:], unix.IFLA_NET_NS_FD)
	ne.PutUint32(msg[hdr+4:], uint32(nsfd))
	if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return err
	}
	buf := make([]byte, 4096)
	n, _, err := unix.Recvfrom(fd, buf, 0)
	if err != nil {
		return err
	}
	msgs, err := syscall.ParseNetlinkMessage(buf[:n])
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 4 {
			continue
		}
		if e := int32(ne.Uint32(m.Data)); e != 0 {
			return unix.Errno(-e)
		}
		return nil
	}
	return fmt.Errorf("no netlink acknowledgement")
}

// setFlags sets flags (IFF_UP, ...) on ifname (SIOCSIFFLAGS).
func setFlags(ifname string, flags uint16) error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	req, err := unix.NewIfreq(ifname)
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, req); err != nil {
		return err
	}
	req.SetUint16(req.Uint16() | flags)
	return unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, req)
}
