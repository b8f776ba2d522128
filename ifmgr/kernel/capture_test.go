package kernel

import (
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
				if l.Name != "tcapbr" || l.Kind != "bridge" || l.Group != 4 || len(l.MAC) != 6 {
					t.Fatalf("decoded %+v", l)
				}
			default:
				t.Fatalf("fixture of unknown kind")
			}
		})
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
