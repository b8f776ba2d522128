package kernel

import (
	"encoding/binary"
	"errors"
	"slices"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// vlanInfo is one IFLA_BRIDGE_VLAN_INFO payload, host order.
func vlanInfo(flags, vid uint16) []byte {
	b := make([]byte, 4)
	binary.NativeEndian.PutUint16(b[0:], flags)
	binary.NativeEndian.PutUint16(b[2:], vid)
	return b
}

// afSpec encodes IFLA_AF_SPEC's payload from (flags, vid) pairs, with the
// attributes the kernel puts around them that the decoder must skip.
func afSpec(t testing.TB, entries ...[2]uint16) []byte {
	t.Helper()
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.NativeEndian
	for _, e := range entries {
		ae.Bytes(iflaBridgeVLANInfo, vlanInfo(e[0], e[1]))
	}
	ae.Bytes(3, []byte{1, 2, 3, 4, 5, 6, 7, 8}) // IFLA_BRIDGE_VLAN_TUNNEL_INFO-like: skipped
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// encodeVLANs is the uncompressed IFLA_AF_SPEC payload of a membership list,
// as a RTEXT_FILTER_BRVLAN dump writes it.
func encodeVLANs(t testing.TB, vs []BridgeVLAN) []byte {
	var e [][2]uint16
	for _, v := range vs {
		var f uint16
		if v.PVID {
			f |= bridgeVLANInfoPVID
		}
		if v.Untagged {
			f |= bridgeVLANInfoUntagged
		}
		e = append(e, [2]uint16{f, v.VID})
	}
	return afSpec(t, e...)
}

const (
	pv  = bridgeVLANInfoPVID
	unt = bridgeVLANInfoUntagged
	rb  = bridgeVLANInfoRangeBegin
	re  = bridgeVLANInfoRangeEnd
)

func TestDecodeBridgeVLANs(t *testing.T) {
	got, err := DecodeBridgeVLANs(afSpec(t,
		[2]uint16{pv | unt | 1<<5, 10}, // BRENTRY: ignored
		[2]uint16{rb, 20}, [2]uint16{re, 23},
		[2]uint16{unt | rb, 4093}, [2]uint16{unt | re, 4094},
		[2]uint16{0, 5},
	))
	if err != nil {
		t.Fatal(err)
	}
	want := []BridgeVLAN{{VID: 5}, {VID: 10, PVID: true, Untagged: true},
		{VID: 20}, {VID: 21}, {VID: 22}, {VID: 23},
		{VID: 4093, Untagged: true}, {VID: 4094, Untagged: true}}
	if !slices.Equal(got, want) {
		t.Fatalf("decoded %v\nwant    %v", got, want)
	}
	if got, err := DecodeBridgeVLANs(nil); err != nil || got == nil || len(got) != 0 {
		t.Fatalf("empty: %v %v", got, err)
	}
	bad := map[string][]byte{
		"vid 0":             afSpec(t, [2]uint16{0, 0}),
		"vid 4095":          afSpec(t, [2]uint16{0, 4095}),
		"end without begin": afSpec(t, [2]uint16{re, 5}),
		"begin never ends":  afSpec(t, [2]uint16{rb, 5}),
		"end before begin":  afSpec(t, [2]uint16{rb, 9}, [2]uint16{re, 5}),
		"end at begin":      afSpec(t, [2]uint16{rb, 9}, [2]uint16{re, 9}),
		"begin in a range":  afSpec(t, [2]uint16{rb, 5}, [2]uint16{rb, 6}, [2]uint16{re, 7}),
		"single in a range": afSpec(t, [2]uint16{rb, 5}, [2]uint16{0, 6}, [2]uint16{re, 7}),
		"begin and end":     afSpec(t, [2]uint16{rb | re, 5}),
		"pvid range":        afSpec(t, [2]uint16{rb | pv, 5}, [2]uint16{re | pv, 7}),
		"twice":             afSpec(t, [2]uint16{0, 5}, [2]uint16{unt, 5}),
		"twice by range":    afSpec(t, [2]uint16{0, 6}, [2]uint16{rb, 5}, [2]uint16{re, 7}),
		"two pvids":         afSpec(t, [2]uint16{pv, 5}, [2]uint16{pv, 6}),
		"short info":        {6, 0, 2, 0, 1, 0, 0, 0},
		"truncated":         {8, 0, 2, 0, 1, 0},
	}
	for name, b := range bad {
		if got, err := DecodeBridgeVLANs(b); err == nil {
			t.Errorf("%s: decoded %v", name, got)
		}
	}
	for _, name := range []string{"vid 0", "vid 4095"} {
		if _, err := DecodeBridgeVLANs(bad[name]); !errors.Is(err, ErrBadVID) {
			t.Errorf("%s: %v, want ErrBadVID", name, err)
		}
	}
}

// TestDecodeBridgeLink decodes a whole AF_BRIDGE RTM_NEWLINK built in host
// order (so it runs on big-endian too): the link's fields and its
// membership.
func TestDecodeBridgeLink(t *testing.T) {
	body := buildNewLink(t, unix.AF_BRIDGE, func(ae *netlink.AttributeEncoder) {
		ae.Uint32(unix.IFLA_MASTER, 4)
		ae.Nested(unix.IFLA_AF_SPEC, func(n *netlink.AttributeEncoder) error {
			n.Bytes(iflaBridgeVLANInfo, vlanInfo(pv|unt, 1))
			n.Bytes(iflaBridgeVLANInfo, vlanInfo(rb, 100))
			n.Bytes(iflaBridgeVLANInfo, vlanInfo(re, 102))
			return nil
		})
	})
	l, vs, err := decodeBridgeLink(body)
	if err != nil {
		t.Fatal(err)
	}
	want := []BridgeVLAN{{VID: 1, PVID: true, Untagged: true}, {VID: 100}, {VID: 101}, {VID: 102}}
	if l.Index != 9 || l.Master != 4 || l.Name != "eth0.3" || !slices.Equal(vs, want) {
		t.Fatalf("decoded %+v %v", l, vs)
	}
	// No IFLA_AF_SPEC: a port with no VLAN.
	if _, vs, err := decodeBridgeLink(buildNewLink(t, unix.AF_BRIDGE, nil)); err != nil || vs == nil || len(vs) != 0 {
		t.Fatalf("no AF_SPEC: %v %v", vs, err)
	}
	bad := buildNewLink(t, unix.AF_BRIDGE, func(ae *netlink.AttributeEncoder) {
		ae.Nested(unix.IFLA_AF_SPEC, func(n *netlink.AttributeEncoder) error {
			n.Bytes(iflaBridgeVLANInfo, vlanInfo(rb, 100))
			return nil
		})
	})
	if _, _, err := decodeBridgeLink(bad); err == nil {
		t.Fatal("open range decoded")
	}
}

func TestBridgeData(t *testing.T) {
	if b, err := encodeBridgeData(BridgeOptions{}, false); err != nil || b != nil {
		t.Fatalf("zero options: %x %v, want no IFLA_INFO_DATA", b, err)
	}
	for _, opt := range []BridgeOptions{{}, {VLANFiltering: true}, {VLANFiltering: true, DefaultPVID: 4094}, {DefaultPVID: 1}} {
		b, err := encodeBridgeData(opt, true)
		if err != nil {
			t.Fatal(err)
		}
		f, p, err := decodeBridgeData(b)
		if err != nil || f != opt.VLANFiltering || p != opt.DefaultPVID {
			t.Errorf("%s: decoded %v %d %v", opt, f, p, err)
		}
	}
	for _, pvid := range []uint16{4095, 0xffff} {
		if _, err := encodeBridgeData(BridgeOptions{VLANFiltering: true, DefaultPVID: pvid}, false); !errors.Is(err, ErrBadVID) {
			t.Errorf("default pvid %d: %v", pvid, err)
		}
	}
	// Wrong sizes fail rather than read garbage.
	ae := netlink.NewAttributeEncoder()
	ae.Uint32(unix.IFLA_BR_VLAN_FILTERING, 1)
	b, _ := ae.Encode()
	if _, _, err := decodeBridgeData(b); err == nil {
		t.Error("u32 IFLA_BR_VLAN_FILTERING decoded")
	}
	// Through decode, as IFLA_INFO_DATA of kind bridge (not vlan).
	body := bridgeNewLink(t, func(d *netlink.AttributeEncoder) {
		d.Uint32(unix.IFLA_BR_FORWARD_DELAY, 1500)
		d.Uint8(unix.IFLA_BR_VLAN_FILTERING, 1)
		d.Uint16(unix.IFLA_BR_VLAN_DEFAULT_PVID, 0)
	})
	l, err := decode(body)
	if err != nil || l.Kind != KindBridge || !l.VLANFiltering || l.DefaultPVID != 0 || l.VLANID != 0 {
		t.Fatalf("decoded %+v %v", l, err)
	}
	body = bridgeNewLink(t, func(d *netlink.AttributeEncoder) { d.Uint16(unix.IFLA_BR_VLAN_DEFAULT_PVID, 7) })
	if l, err := decode(body); err != nil || l.VLANFiltering || l.DefaultPVID != 7 {
		t.Fatalf("decoded %+v %v", l, err)
	}
}

// bridgeNewLink is an AF_UNSPEC RTM_NEWLINK of kind bridge with data's
// IFLA_INFO_DATA.
func bridgeNewLink(t *testing.T, data func(*netlink.AttributeEncoder)) []byte {
	t.Helper()
	hdr := make([]byte, sizeofIfInfomsg)
	binary.NativeEndian.PutUint32(hdr[4:], 3)
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.NativeEndian
	ae.String(unix.IFLA_IFNAME, "br0")
	ae.Nested(unix.IFLA_LINKINFO, func(n *netlink.AttributeEncoder) error {
		n.String(unix.IFLA_INFO_KIND, "bridge")
		n.Nested(unix.IFLA_INFO_DATA, func(d *netlink.AttributeEncoder) error {
			data(d)
			return nil
		})
		return nil
	})
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append(hdr, b...)
}

// TestBridgeVLANRequest checks the bytes sent for a membership change: an
// AF_BRIDGE ifinfomsg (family in byte 0 on any byte order), the ifindex,
// and IFLA_AF_SPEC with the side and one struct bridge_vlan_info.
func TestBridgeVLANRequest(t *testing.T) {
	for _, self := range []bool{false, true} {
		m, err := bridgeVLANRequest(unix.RTM_SETLINK, 42, self, pv|unt, 10)
		if err != nil {
			t.Fatal(err)
		}
		b := m.Data
		if m.Header.Type != unix.RTM_SETLINK || b[0] != unix.AF_BRIDGE || b[1] != 0 || binary.NativeEndian.Uint32(b[4:8]) != 42 {
			t.Fatalf("header %v, ifinfomsg % x", m.Header, b[:16])
		}
		ad, err := netlink.NewAttributeDecoder(b[sizeofIfInfomsg:])
		if err != nil {
			t.Fatal(err)
		}
		ad.ByteOrder = binary.NativeEndian
		var side uint16
		var info []byte
		for ad.Next() {
			if ad.Type() != unix.IFLA_AF_SPEC {
				t.Fatalf("attribute %d outside IFLA_AF_SPEC", ad.Type())
			}
			ad.Nested(func(n *netlink.AttributeDecoder) error {
				for n.Next() {
					switch n.Type() {
					case iflaBridgeFlags:
						side = n.Uint16()
					case iflaBridgeVLANInfo:
						info = n.Bytes()
					}
				}
				return n.Err()
			})
		}
		if err := ad.Err(); err != nil {
			t.Fatal(err)
		}
		wantSide := uint16(bridgeFlagsMaster)
		if self {
			wantSide = bridgeFlagsSelf
		}
		if side != wantSide || !slices.Equal(info, vlanInfo(pv|unt, 10)) {
			t.Fatalf("self %v: flags %d, info % x", self, side, info)
		}
	}
}

// TestBridgeBadVID: VIDs outside 1..4094 are refused with ErrBadVID before
// any kernel call (a closed Conn proves it), so it runs on any kernel.
func TestBridgeBadVID(t *testing.T) {
	c, err := Dial()
	if err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	for _, vid := range []uint16{0, 4095, 0xffff} {
		for _, self := range []bool{false, true} {
			if err := c.AddBridgeVLAN(1, self, BridgeVLAN{VID: vid, PVID: true}); !errors.Is(err, ErrBadVID) {
				t.Errorf("add vid %d self %v: %v", vid, self, err)
			}
			if err := c.DelBridgeVLAN(1, self, vid); !errors.Is(err, ErrBadVID) {
				t.Errorf("del vid %d self %v: %v", vid, self, err)
			}
		}
		if vid == 0 {
			continue // default PVID 0 is "none"
		}
		if _, err := c.CreateBridgeWith("tbad", 1, BridgeOptions{VLANFiltering: true, DefaultPVID: vid}); !errors.Is(err, ErrBadVID) {
			t.Errorf("create with default pvid %d: %v", vid, err)
		}
		if err := c.SetBridgeOptions(1, BridgeOptions{VLANFiltering: true, DefaultPVID: vid}); !errors.Is(err, ErrBadVID) {
			t.Errorf("set default pvid %d: %v", vid, err)
		}
	}
}

func TestMergeVLANs(t *testing.T) {
	a := []BridgeVLAN{{VID: 1, PVID: true}, {VID: 5}}
	b := []BridgeVLAN{{VID: 3}, {VID: 5, Untagged: true}}
	got := mergeVLANs(a, b)
	if want := []BridgeVLAN{{VID: 1, PVID: true}, {VID: 3}, {VID: 5}}; !slices.Equal(got, want) {
		t.Fatalf("merged %v, want %v", got, want)
	}
	if got := mergeVLANs(nil, nil); got == nil || len(got) != 0 {
		t.Fatalf("nil, nil: %#v", got)
	}
}
