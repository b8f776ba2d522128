package kernel

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"

	"github.com/mdlayher/netlink"
	"github.com/uroute/uroute/ifmgr/ifname"
	"golang.org/x/sys/unix"
)

// Why ifmgr decodes link messages itself instead of through
// rtnetlink.LinkMessage.UnmarshalBinary (rtnetlink/v2 v2.3.0):
//
//   - rtnetlink does decode IFLA_LINK, but into the misnamed field
//     LinkAttributes.Type ("Link type"), and it ignores IFLA_LINK_NETNSID, so
//     a veth peer in another namespace looks like a local ifindex.
//   - It fails the whole message on an IFLA_STATS of other than 92/96 bytes, an
//     IFLA_STATS64 of other than 184/192/200 bytes and an IFLA_ADDRESS,
//     IFLA_BROADCAST or IFLA_PERM_ADDRESS shorter than 4 or longer than 32
//     bytes; rtnetlink.Conn then fails the whole batch. A kernel that grows
//     struct rtnl_link_stats64 once more would make every dump fail.
//   - It reads ifi_family and the pad byte after it as one host-endian uint16:
//     on big-endian MIPS AF_BRIDGE (7) comes out as 0x0700.
//
// decode reads only the attributes Link needs, with exact sizes where the
// kernel's layout is fixed, and skips everything else. The request side still
// goes through rtnetlink (LinkMessage, LinkAttributes, LinkInfo, LinkData);
// see linkRequest in conn.go.

// errShortLink is returned for a link message shorter than struct ifinfomsg.
var errShortLink = errors.New("link message shorter than struct ifinfomsg")

// ifinfomsg is the fixed header of RTM_{NEW,DEL,GET,SET}LINK:
//
//	struct ifinfomsg {
//		unsigned char  ifi_family;
//		unsigned char  __ifi_pad;
//		unsigned short ifi_type;   // ARPHRD_*
//		int            ifi_index;
//		unsigned int   ifi_flags;  // IFF_*
//		unsigned int   ifi_change;
//	};
//
// All fields are in host byte order.
const sizeofIfInfomsg = unix.SizeofIfInfomsg

// linkFamily returns ifi_family of a link message body (the netlink payload).
func linkFamily(b []byte) (uint8, bool) {
	if len(b) < sizeofIfInfomsg {
		return 0, false
	}
	return b[0], true
}

// decode decodes the payload of an RTM_NEWLINK or RTM_DELLINK message
// (struct ifinfomsg followed by IFLA_* attributes) into a Link. The caller
// filters on ifi_family (see linkFamily) before decoding.
func decode(b []byte) (Link, error) {
	l, _, err := decodeLink(b)
	return l, err
}

// decodeLink is decode, and also returns the IFLA_AF_SPEC payload (nil if
// none): for AF_BRIDGE messages, the bridge VLAN membership
// (decodeBridgeLink). In AF_UNSPEC messages it holds per-family
// attributes (AF_INET, AF_INET6) that ifmgr does not read. The payload
// aliases b.
//
// It allocates only what the Link keeps (its name, alias and addresses):
// ifmgrd decodes every link of every dump, echo and event, and during a
// bring-up of thousands of ports the per-attribute copies of
// netlink.AttributeDecoder (dozens of attributes per link, a bridge's
// IFLA_INFO_DATA alone some forty) were a fifth of everything it
// allocated, garbage strewn between the link table's long-lived strings.
func decodeLink(b []byte) (Link, []byte, error) {
	if len(b) < sizeofIfInfomsg {
		return Link{}, nil, errShortLink
	}
	ne := binary.NativeEndian
	l := Link{
		Index: ne.Uint32(b[4:8]),
		Flags: ne.Uint32(b[8:12]),
	}
	var infoData, afSpec, mac, perm []byte
	ad := attrs{b: b[sizeofIfInfomsg:]}
	for ad.next() {
		switch ad.typ {
		case unix.IFLA_IFNAME:
			l.Name = ad.string()
		case unix.IFLA_ADDRESS:
			mac = ad.data
		case unix.IFLA_PERM_ADDRESS:
			perm = ad.data
		case unix.IFLA_LINK:
			l.IfLink = ad.uint32()
		case unix.IFLA_LINK_NETNSID:
			l.IfLinkOtherNS = true
		case unix.IFLA_MASTER:
			l.Master = ad.uint32()
		case unix.IFLA_GROUP:
			l.Group = ad.uint32()
		case unix.IFLA_IFALIAS:
			l.Alias = ad.string()
		case unix.IFLA_OPERSTATE:
			l.Oper = ad.uint8()
		case unix.IFLA_AF_SPEC:
			afSpec = ad.data
		case unix.IFLA_LINKINFO:
			info := attrs{b: ad.data}
			for info.next() {
				switch info.typ {
				case unix.IFLA_INFO_KIND:
					l.Kind = kindOf(info.data)
				case unix.IFLA_INFO_DATA:
					infoData = info.data
				}
			}
			if info.err != nil {
				ad.err = info.err
			}
		}
	}
	if ad.err != nil {
		return Link{}, nil, fmt.Errorf("link %d %q: %w", l.Index, l.Name, ad.err)
	}
	l.MAC, l.PermMAC = hwAddrs(mac, perm)
	if infoData != nil {
		var err error
		switch l.Kind {
		case KindVLAN:
			vid, _, _, err := DecodeVLANData(infoData)
			if err != nil {
				return Link{}, nil, fmt.Errorf("link %d %q: %w", l.Index, l.Name, err)
			}
			l.VLANID = vid
		case KindBridge:
			l.VLANFiltering, l.DefaultPVID, err = decodeBridgeData(infoData)
			if err != nil {
				return Link{}, nil, fmt.Errorf("link %d %q: %w", l.Index, l.Name, err)
			}
		}
	}
	return l, afSpec, nil
}

// errBadAttribute: an attribute header that is cut short or claims more
// bytes than there are.
var errBadAttribute = errors.New("netlink: invalid attribute; length too short or too large")

// attrs walks the netlink attributes in b without copying them: after each
// next that returns true, typ is the attribute's type (flags masked off)
// and data its payload, which aliases b. A malformed attribute stops the
// walk with err set; values of the wrong size set err too (as
// netlink.AttributeDecoder does), so a message is taken whole or refused.
type attrs struct {
	b    []byte
	typ  uint16
	data []byte
	err  error
}

const nlaHeaderLen = 4

func (a *attrs) next() bool {
	if a.err != nil || len(a.b) == 0 {
		return false
	}
	if len(a.b) < nlaHeaderLen {
		a.err = errBadAttribute
		return false
	}
	n := int(binary.NativeEndian.Uint16(a.b[0:2]))
	a.typ = binary.NativeEndian.Uint16(a.b[2:4]) &^ (unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)
	switch {
	case n > len(a.b) || (n != 0 && n < nlaHeaderLen):
		a.err = errBadAttribute
		return false
	case n == 0:
		a.data = a.b[:0:0]
		n = nlaHeaderLen
	default:
		a.data = a.b[nlaHeaderLen:n:n]
		n = (n + unix.NLA_ALIGNTO - 1) &^ (unix.NLA_ALIGNTO - 1)
	}
	a.b = a.b[min(n, len(a.b)):]
	return true
}

func (a *attrs) sized(n int) []byte {
	if len(a.data) != n {
		if a.err == nil {
			a.err = fmt.Errorf("netlink: attribute %d has %d bytes, want %d", a.typ, len(a.data), n)
		}
		return make([]byte, n)
	}
	return a.data
}

func (a *attrs) uint8() uint8   { return a.sized(1)[0] }
func (a *attrs) uint16() uint16 { return binary.NativeEndian.Uint16(a.sized(2)) }
func (a *attrs) uint32() uint32 { return binary.NativeEndian.Uint32(a.sized(4)) }

// string is the payload as text, without its NUL terminator(s).
func (a *attrs) string() string {
	b := a.data
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return string(b)
}

// kindOf returns IFLA_INFO_KIND as a Kind, without allocating for the
// kinds a router has by the thousand.
func kindOf(b []byte) Kind {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	for _, k := range commonKinds {
		if string(b) == string(k) {
			return k
		}
	}
	return Kind(b)
}

var commonKinds = [...]Kind{KindBridge, KindVLAN, "veth", "macvlan", "tun", "dummy", "bond", "wireguard"}

// hwAddrs copies a link's addresses out of the message (nil for an
// empty or absent one), both in one allocation.
func hwAddrs(mac, perm []byte) (net.HardwareAddr, net.HardwareAddr) {
	if len(mac)+len(perm) == 0 {
		return nil, nil
	}
	buf := make([]byte, len(mac)+len(perm))
	copy(buf, mac)
	copy(buf[len(mac):], perm)
	return hwAddr(buf[:len(mac):len(mac)]), hwAddr(buf[len(mac):])
}

// hwAddr keeps an address, or nil for an empty one.
func hwAddr(b []byte) net.HardwareAddr {
	if len(b) == 0 {
		return nil
	}
	return net.HardwareAddr(b)
}

// ErrBadVID is returned for an 802.1Q VLAN ID outside 1..4094: the same
// value as ifname.ErrBadVID and ifmgr.ErrBadVID.
var ErrBadVID = ifname.ErrBadVID

// EncodeVLANData returns the IFLA_INFO_DATA payload for IFLA_INFO_KIND "vlan":
// IFLA_VLAN_ID (u16, host order) and IFLA_VLAN_PROTOCOL (ETH_P_8021Q, __be16:
// network order whatever the host, as the kernel reads it with
// nla_get_be16). The payload is the nested attributes themselves, without the
// IFLA_INFO_DATA header; rtnetlink.LinkData adds that header.
func EncodeVLANData(vid uint16) ([]byte, error) {
	if err := ifname.ValidVID(int(vid)); err != nil {
		return nil, err
	}
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.NativeEndian
	ae.Uint16(unix.IFLA_VLAN_ID, vid)
	ae.Bytes(unix.IFLA_VLAN_PROTOCOL, binary.BigEndian.AppendUint16(nil, unix.ETH_P_8021Q))
	return ae.Encode()
}

// DecodeVLANData decodes the IFLA_INFO_DATA payload of a "vlan" link as the
// kernel's vlan_fill_info (net/8021q/vlan_netlink.c) writes it:
//
//	IFLA_VLAN_PROTOCOL    __be16 (nla_put_be16: network order, no NLA_F_NET_BYTEORDER)
//	IFLA_VLAN_ID          u16
//	IFLA_VLAN_FLAGS       struct ifla_vlan_flags { u32 flags; u32 mask; } (a flat
//	                      8-byte struct, not nested attributes), only if flags != 0
//	IFLA_VLAN_INGRESS_QOS nested IFLA_VLAN_QOS_MAPPING { u32 from; u32 to; }
//	IFLA_VLAN_EGRESS_QOS  nested, same
//
// It returns the VLAN ID, the protocol (0x8100 or 0x88a8) in host order and
// ifla_vlan_flags.flags (0 when absent). QoS maps are skipped. IFLA_VLAN_ID
// is required.
func DecodeVLANData(b []byte) (vid uint16, proto uint16, flags uint32, err error) {
	ad := attrs{b: b}
	var haveID bool
	for ad.next() {
		switch ad.typ {
		case unix.IFLA_VLAN_ID:
			vid = ad.uint16()
			haveID = true
		case unix.IFLA_VLAN_PROTOCOL:
			proto = binary.BigEndian.Uint16(ad.sized(2))
		case unix.IFLA_VLAN_FLAGS:
			flags = binary.NativeEndian.Uint32(ad.sized(8)) // struct ifla_vlan_flags: flags, then mask
		}
	}
	if ad.err != nil {
		return 0, 0, 0, fmt.Errorf("vlan data: %w", ad.err)
	}
	if !haveID {
		return 0, 0, 0, errors.New("vlan data: no IFLA_VLAN_ID")
	}
	return vid, proto, flags, nil
}
