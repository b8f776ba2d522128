package devmapper

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unsafe"
)

// TestEncode checks the ioctl buffer against the offsets of struct
// dm_ioctl and struct dm_target_spec in include/uapi/linux/dm-ioctl.h:
// version[3] at 0, data_size 12, data_start 16, target_count 20, flags 28,
// name[128] at 48, the payload at 312; a target spec's length at 8 and
// target_type[16] at 24, its parameters at 40. (Only the crash test's
// guests can run the ioctls themselves: the host has no device-mapper.)
func TestEncode(t *testing.T) {
	payload := tablePayload("log-writes", 65536, "/dev/vda /dev/vdb")
	words := encode("datalog", 2, 1, payload)
	b := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), len(words)*8)
	ne := binary.NativeEndian
	for _, f := range []struct {
		name string
		off  int
		want uint32
	}{{"version major", 0, 4}, {"data_size", 12, bufSize}, {"data_start", 16, 312}, {"target_count", 20, 1}, {"flags", 28, 2}} {
		if got := ne.Uint32(b[f.off:]); got != f.want {
			t.Errorf("%s at %d = %d, want %d", f.name, f.off, got, f.want)
		}
	}
	if !bytes.HasPrefix(b[48:], []byte("datalog\x00")) {
		t.Errorf("name at 48: %q", b[48:56])
	}
	spec := b[312:]
	if got := ne.Uint64(spec[8:]); got != 65536 {
		t.Errorf("target length = %d", got)
	}
	if !bytes.HasPrefix(spec[24:], []byte("log-writes\x00")) {
		t.Errorf("target type at 24: %q", spec[24:40])
	}
	if !bytes.HasPrefix(spec[40:], []byte("/dev/vda /dev/vdb\x00")) {
		t.Errorf("parameters at 40: %q", spec[40:60])
	}
}

func TestMarkRefusesWhatTheKernelWouldMangle(t *testing.T) {
	for _, text := range []string{"", "two words", "a\nb", string(bytes.Repeat([]byte("x"), 480))} {
		// Refused before any ioctl (the host has no device-mapper, so an
		// ioctl error would pass this test for the wrong reason).
		if err := Mark("datalog", text); err == nil || !strings.HasPrefix(err.Error(), "log-writes mark") {
			t.Errorf("Mark(%q) = %v, want it refused as a mark", text, err)
		}
	}
}
