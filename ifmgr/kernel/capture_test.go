package kernel

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jsimonetti/rtnetlink/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// captureLine starts the lines TestCaptureLinkMessages prints: "capture:
// KIND HEX", HEX the RTM_NEWLINK payload (ifinfomsg and attributes, no
// nlmsghdr) as the kernel sent it. qemu-test's TestGuestKernelTests collects
// them from each guest and, with UROUTE_WRITE_FIXTURES=1, writes them to
// testdata/newlink-ARCH-KIND.hex.
const captureLine = "capture: "

// rawLink is the RTM_NEWLINK payload the kernel answers RTM_GETLINK for
// name with, untouched.
func rawLink(t *testing.T, c *Conn, name string) []byte {
	t.Helper()
	req, err := linkRequest(unix.RTM_GETLINK, netlink.Request,
		rtnetlink.LinkMessage{Attributes: &rtnetlink.LinkAttributes{Name: name}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	var raw []byte
	c.mu.Lock()
	_, err = c.exchange(req, func(m netlink.Message) error {
		if m.Header.Type == unix.RTM_NEWLINK && raw == nil {
			raw = append([]byte(nil), m.Data...)
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil || raw == nil {
		t.Fatalf("get %s: %v (%d bytes)", name, err, len(raw))
	}
	return raw
}

// TestCaptureLinkMessages prints, in capture mode (UROUTE_CAPTURE=1, set by
// the QEMU guest run), the kernel's RTM_NEWLINK for a bridge "tcapbr" (group
// 4) and a VLAN "tcapbr.10" (vid 10 on it, group 4), and checks that our
// decoder reads them as created. The printed bytes become the committed
// fixtures of TestDecodeCapturedFixtures and FuzzDecodeLink's seeds.
func TestCaptureLinkMessages(t *testing.T) {
	if os.Getenv("UROUTE_CAPTURE") != "1" {
		t.Skip("capture mode: UROUTE_CAPTURE=1 (the QEMU guest run sets it; see qemu-test/README.md, the kernel tests inside the guests)")
	}
	c := dial(t)
	need8021q(t, c)
	deleteLater(t, c, "tcapbr")
	br, err := c.CreateBridge("tcapbr", 4)
	if err != nil {
		t.Fatal(err)
	}
	v, err := c.CreateVLAN("tcapbr.10", br.Index, 10, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range []Link{br, v} {
		raw := rawLink(t, c, l.Name)
		got, err := decode(raw)
		if err != nil {
			t.Fatalf("decode %s: %v", l.Name, err)
		}
		if got.Index != l.Index || got.Kind != l.Kind || got.VLANID != l.VLANID || got.IfLink != l.IfLink || got.Group != 4 {
			t.Errorf("decoded %+v, created %+v", got, l)
		}
		// One line each, whole: the host reads it back from the console.
		t.Log(captureLine + string(l.Kind) + " " + hex.EncodeToString(raw))
	}
}

// TestCaptureBridgeVLANMessages prints, in capture mode, the kernel's
// bridge VLAN messages, all RTM_NEWLINK payloads:
//   - vlanbridge: the AF_UNSPEC link of a filtering bridge "tcapvbr"
//     (default PVID 0), whose IFLA_INFO_DATA has IFLA_BR_VLAN_FILTERING 1;
//   - brport, brself: the AF_BRIDGE dump replies (RTEXT_FILTER_BRVLAN, one
//     IFLA_BRIDGE_VLAN_INFO per VLAN) of its port "tcapv0" (10 PVID
//     untagged, 20-23 tagged) and of the bridge itself (self: 10 tagged);
//   - brportnotify: the AF_BRIDGE notification on RTNLGRP_LINK after 24 is
//     added to the port, which the kernel writes compressed (10, then the
//     range 20-24 as RANGE_BEGIN/RANGE_END).
//
// Each is decoded here too and must say what was configured.
func TestCaptureBridgeVLANMessages(t *testing.T) {
	if os.Getenv("UROUTE_CAPTURE") != "1" {
		t.Skip("capture mode: UROUTE_CAPTURE=1 (the QEMU guest run sets it; see qemu-test/README.md, the kernel tests inside the guests)")
	}
	c := dial(t)
	needBridgeVLANFiltering(t, c)
	deleteLater(t, c, "tcapvbr")
	deleteLater(t, c, "tcapv0")
	br, err := c.CreateBridgeWith("tcapvbr", 4, BridgeOptions{VLANFiltering: true})
	if err != nil {
		t.Fatal(err)
	}
	createVeth(t, c, "tcapv0", "tcapv1", 4)
	port := mustLink(t, c, "tcapv0")
	if err := c.SetMaster(port.Index, br.Index); err != nil {
		t.Fatal(err)
	}
	for _, v := range []BridgeVLAN{{VID: 10, PVID: true, Untagged: true}, {VID: 20}, {VID: 21}, {VID: 22}, {VID: 23}} {
		if err := c.AddBridgeVLAN(port.Index, false, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.AddBridgeVLAN(br.Index, true, BridgeVLAN{VID: 10}); err != nil {
		t.Fatal(err)
	}

	raw := rawLink(t, c, "tcapvbr")
	if l, err := decode(raw); err != nil || !l.VLANFiltering || l.DefaultPVID != 0 || l.Kind != KindBridge {
		t.Fatalf("decode vlanbridge: %+v %v", l, err)
	}
	t.Log(captureLine + "vlanbridge " + hex.EncodeToString(raw))

	dump := rawBridgeDump(t, c)
	portWant := []BridgeVLAN{{VID: 10, PVID: true, Untagged: true}, {VID: 20}, {VID: 21}, {VID: 22}, {VID: 23}}
	for kind, want := range map[string]struct {
		index uint32
		vlans []BridgeVLAN
	}{
		"brport": {port.Index, portWant},
		"brself": {br.Index, []BridgeVLAN{{VID: 10}}},
	} {
		raw := dump[want.index]
		l, vs, err := decodeBridgeLink(raw)
		if err != nil || l.Index != want.index || !slices.Equal(vs, want.vlans) {
			t.Fatalf("decode %s: %+v %v %v, want %v", kind, l, vs, err, want.vlans)
		}
		t.Log(captureLine + kind + " " + hex.EncodeToString(raw))
	}

	// The notification, on a socket of our own (the Watcher keeps no raw
	// bytes).
	nl, err := netlink.Dial(unix.NETLINK_ROUTE, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer nl.Close()
	if err := nl.JoinGroup(unix.RTNLGRP_LINK); err != nil {
		t.Fatal(err)
	}
	if err := c.AddBridgeVLAN(port.Index, false, BridgeVLAN{VID: 24}); err != nil {
		t.Fatal(err)
	}
	if err := nl.SetReadDeadline(time.Now().Add(2 * time.Minute)); err != nil {
		t.Fatal(err)
	}
	var note []byte
	for note == nil {
		msgs, err := nl.Receive()
		if err != nil {
			t.Fatalf("waiting for the AF_BRIDGE notification: %v", err)
		}
		for _, m := range msgs {
			if fam, ok := linkFamily(m.Data); ok && fam == unix.AF_BRIDGE && m.Header.Type == unix.RTM_NEWLINK &&
				binary.NativeEndian.Uint32(m.Data[4:8]) == port.Index {
				note = append([]byte(nil), m.Data...)
			}
		}
	}
	l, vs, err := decodeBridgeLink(note)
	if want := append(portWant, BridgeVLAN{VID: 24}); err != nil || l.Index != port.Index || !slices.Equal(vs, want) {
		t.Fatalf("decode brportnotify: %+v %v %v, want %v", l, vs, err, want)
	}
	if evs := eventsOf([]netlink.Message{{Header: netlink.Header{Type: unix.RTM_NEWLINK}, Data: note}}); len(evs) != 1 || evs[0].Type != EventVLAN || evs[0].Link.Index != port.Index {
		t.Fatalf("notification as events: %+v", evs)
	}
	t.Log(captureLine + "brportnotify " + hex.EncodeToString(note))
}

// rawBridgeDump is the AF_BRIDGE RTEXT_FILTER_BRVLAN dump's payloads by
// ifindex, untouched (the first per ifindex).
func rawBridgeDump(t *testing.T, c *Conn) map[uint32][]byte {
	t.Helper()
	req, err := bridgeVLANDumpRequest()
	if err != nil {
		t.Fatal(err)
	}
	out := map[uint32][]byte{}
	c.mu.Lock()
	_, err = c.exchange(req, func(m netlink.Message) error {
		if fam, ok := linkFamily(m.Data); ok && fam == unix.AF_BRIDGE && m.Header.Type == unix.RTM_NEWLINK {
			i := binary.NativeEndian.Uint32(m.Data[4:8])
			if out[i] == nil {
				out[i] = append([]byte(nil), m.Data...)
			}
		}
		return nil
	})
	c.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// capturedFixtures are testdata/newlink-ARCH-KIND.hex: RTM_NEWLINK payloads
// captured from the Debian kernels in the QEMU guests (all little-endian).
func capturedFixtures(t testing.TB) map[string][]byte {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", "newlink-*.hex"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[filepath.Base(f)] = raw
	}
	return out
}

// TestDecodeCapturedFixtures decodes each guest kernel's captured bridge and
// VLAN: what TestCaptureLinkMessages created must come back.
func TestDecodeCapturedFixtures(t *testing.T) {
	if binary.NativeEndian.Uint16([]byte{1, 0}) != 1 {
		t.Skip("the captures are little-endian kernel bytes; big-endian decoding is covered by the hand-made fixtures (hostOrder)")
	}
	fx := capturedFixtures(t)
	if len(fx) == 0 {
		t.Fatal("no testdata/newlink-*.hex fixtures")
	}
	for name, raw := range fx {
		t.Run(name, func(t *testing.T) {
			l, err := decode(raw)
			if err != nil {
				t.Fatal(err)
			}
			switch {
			case strings.HasSuffix(name, "-vlan.hex"):
				if l.Name != "tcapbr.10" || l.Kind != "vlan" || l.VLANID != 10 || l.IfLink == 0 || l.IfLinkOtherNS || l.Group != 4 {
					t.Fatalf("decoded %+v", l)
				}
			case strings.HasSuffix(name, "-bridge.hex"):
				// A plain bridge: the kernel's defaults.
				if l.Name != "tcapbr" || l.Kind != "bridge" || l.Group != 4 || len(l.MAC) != 6 || l.VLANFiltering || l.DefaultPVID != 1 {
					t.Fatalf("decoded %+v", l)
				}
			case strings.HasSuffix(name, "-vlanbridge.hex"):
				if l.Name != "tcapvbr" || l.Kind != "bridge" || l.Group != 4 || !l.VLANFiltering || l.DefaultPVID != 0 {
					t.Fatalf("decoded %+v", l)
				}
			case strings.HasSuffix(name, "-brport.hex"), strings.HasSuffix(name, "-brself.hex"), strings.HasSuffix(name, "-brportnotify.hex"):
				checkBridgeFixture(t, name, raw)
			default:
				t.Fatalf("fixture of unknown kind")
			}
		})
	}
}

// checkBridgeFixture decodes a captured AF_BRIDGE message of
// TestCaptureBridgeVLANMessages: the membership it configured, and, for the
// notification, EventVLAN for the port.
func checkBridgeFixture(t *testing.T, name string, raw []byte) {
	t.Helper()
	if fam, _ := linkFamily(raw); fam != unix.AF_BRIDGE {
		t.Fatalf("family %d, want AF_BRIDGE", fam)
	}
	l, vs, err := decodeBridgeLink(raw)
	if err != nil {
		t.Fatal(err)
	}
	port := []BridgeVLAN{{VID: 10, PVID: true, Untagged: true}, {VID: 20}, {VID: 21}, {VID: 22}, {VID: 23}}
	var want []BridgeVLAN
	switch {
	case strings.HasSuffix(name, "-brport.hex"):
		want = port
		if l.Name != "tcapv0" || l.Master == 0 {
			t.Fatalf("decoded %+v", l)
		}
	case strings.HasSuffix(name, "-brself.hex"):
		want = []BridgeVLAN{{VID: 10}}
		if l.Name != "tcapvbr" {
			t.Fatalf("decoded %+v", l)
		}
	default:
		want = append(port, BridgeVLAN{VID: 24})
		evs := eventsOf([]netlink.Message{{Header: netlink.Header{Type: unix.RTM_NEWLINK}, Data: raw}})
		if len(evs) != 1 || evs[0].Type != EventVLAN || evs[0].Link.Index != l.Index || l.Name != "tcapv0" {
			t.Fatalf("events %+v of %+v", evs, l)
		}
	}
	if !slices.Equal(vs, want) {
		t.Fatalf("membership %v, want %v", vs, want)
	}
}

// FuzzDecodeBridgeLink feeds the AF_BRIDGE link-message decoder (dump
// replies and notifications) arbitrary payloads, seeded with the captured
// ones: no panic, and a membership it accepts is sorted, in 1..4094, has at
// most one PVID, and reads the same back from its uncompressed encoding.
func FuzzDecodeBridgeLink(f *testing.F) {
	for name, raw := range capturedFixtures(f) {
		if strings.Contains(name, "-br") {
			f.Add(raw)
		}
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		_, vs, err := decodeBridgeLink(b)
		if err != nil {
			return
		}
		checkMembership(t, vs)
	})
}

// FuzzDecodeBridgeVLANs feeds DecodeBridgeVLANs (IFLA_AF_SPEC payloads),
// seeded with the captured messages' and hand-made ranges.
func FuzzDecodeBridgeVLANs(f *testing.F) {
	for name, raw := range capturedFixtures(f) {
		if strings.Contains(name, "-br") {
			if _, spec, err := decodeLink(raw); err == nil && spec != nil {
				f.Add(spec)
			}
		}
	}
	f.Add(afSpec(f, [2]uint16{pv | unt, 1}, [2]uint16{rb, 2}, [2]uint16{re, 4094}))
	f.Add(afSpec(f, [2]uint16{rb | unt, 7}, [2]uint16{re | unt, 9}, [2]uint16{0, 3}))
	f.Fuzz(func(t *testing.T, b []byte) {
		vs, err := DecodeBridgeVLANs(b)
		if err != nil {
			return
		}
		checkMembership(t, vs)
	})
}

func checkMembership(t *testing.T, vs []BridgeVLAN) {
	t.Helper()
	pvids := 0
	for i, v := range vs {
		if v.VID < 1 || v.VID > 4094 || i > 0 && vs[i-1].VID >= v.VID {
			t.Fatalf("membership %v: VIDs not sorted, unique and in 1..4094", vs)
		}
		if v.PVID {
			pvids++
		}
	}
	if pvids > 1 {
		t.Fatalf("membership %v: %d PVIDs", vs, pvids)
	}
	back, err := DecodeBridgeVLANs(encodeVLANs(t, vs))
	if err != nil || !slices.Equal(back, vs) {
		t.Fatalf("membership %v re-encoded decodes as %v, %v", vs, back, err)
	}
}

// FuzzDecodeLink feeds the link-message decoder arbitrary RTM_NEWLINK
// payloads, seeded with the captured ones: it must never panic, and the VID
// of a VLAN it accepts is the one DecodeVLANData reads from the same
// IFLA_INFO_DATA (one reading of the bytes). The decoders report the VID as
// sent, without a range check: the kernel never sends one outside 1-4094.
func FuzzDecodeLink(f *testing.F) {
	for _, raw := range capturedFixtures(f) {
		f.Add(raw)
	}
	f.Add(rustNetlinkVLAN)
	f.Fuzz(func(t *testing.T, b []byte) {
		l, err := decode(b)
		if err != nil {
			return
		}
		if l.Kind != "vlan" {
			return
		}
		if vid, _, _, err := DecodeVLANData(vlanInfoData(b)); err == nil && vid != l.VLANID {
			t.Fatalf("decode says vid %d, DecodeVLANData %d", l.VLANID, vid)
		}
	})
}

// FuzzDecodeVLANData feeds the IFLA_INFO_DATA decoder of kind vlan: no
// panic, and a VID it accepts survives EncodeVLANData and back.
func FuzzDecodeVLANData(f *testing.F) {
	for name, raw := range capturedFixtures(f) {
		if strings.HasSuffix(name, "-vlan.hex") {
			if d := vlanInfoData(raw); d != nil {
				f.Add(d)
			}
		}
	}
	if d, err := EncodeVLANData(4094); err == nil {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		vid, _, _, err := DecodeVLANData(b)
		if err != nil {
			return
		}
		enc, err := EncodeVLANData(vid)
		if err != nil {
			return // an out-of-range VID the decoder reports as read
		}
		if back, _, _, err := DecodeVLANData(enc); err != nil || back != vid {
			t.Fatalf("vid %d re-encoded decodes as %d, %v", vid, back, err)
		}
	})
}

// vlanInfoData is IFLA_LINKINFO/IFLA_INFO_DATA of an RTM_NEWLINK payload,
// or nil.
func vlanInfoData(msg []byte) []byte {
	if len(msg) < sizeofIfInfomsg {
		return nil
	}
	ad, err := netlink.NewAttributeDecoder(msg[sizeofIfInfomsg:])
	if err != nil {
		return nil
	}
	var data []byte
	for ad.Next() {
		if ad.Type() == unix.IFLA_LINKINFO {
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == unix.IFLA_INFO_DATA {
						data = nad.Bytes()
					}
				}
				return nil
			})
		}
	}
	return data
}
