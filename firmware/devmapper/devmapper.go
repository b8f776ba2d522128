// Package devmapper drives the kernel's device-mapper through its ioctls on
// /dev/mapper/control, for the little the image needs: a log-writes device
// over the data partition, and marks in its log. u-root has no dmsetup, and
// this is all of dmsetup the crash test uses (create, load a one-target
// table, resume, message, remove).
//
// The ioctl argument is struct dm_ioctl (include/uapi/linux/dm-ioctl.h, in
// the CPU's byte order) followed by its payload in one buffer; x/sys/unix
// has the struct and the request numbers, which are the same on every
// architecture the image is built for.
package devmapper

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ControlPath is the device-mapper control node; devtmpfs creates it when
// dm-mod loads.
const ControlPath = "/dev/mapper/control"

// LogWritesTarget is the dm-log-writes target's name (module dm-log-writes).
const LogWritesTarget = "log-writes"

// bufSize is the ioctl buffer: the kernel writes status text back into it,
// and says DM_BUFFER_FULL_FLAG if it is too small; 16 KiB is ample for one
// target.
const bufSize = 16 << 10

// ioctl runs one device-mapper command on the device called name with
// payload after the header.
func ioctl(req uint, name string, flags uint32, targets uint32, payload []byte) (unix.DmIoctl, error) {
	if len(name) >= unix.DM_NAME_LEN {
		return unix.DmIoctl{}, fmt.Errorf("device-mapper name %q: longer than %d bytes", name, unix.DM_NAME_LEN-1)
	}
	if unix.SizeofDmIoctl+len(payload) > bufSize {
		return unix.DmIoctl{}, fmt.Errorf("device-mapper payload of %d bytes is too large", len(payload))
	}
	ctl, err := os.OpenFile(ControlPath, os.O_RDWR, 0)
	if err != nil {
		return unix.DmIoctl{}, fmt.Errorf("device-mapper: %w (is dm-mod loaded?)", err)
	}
	defer ctl.Close()
	words := encode(name, flags, targets, payload)
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&words[0]))
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, ctl.Fd(), uintptr(req), uintptr(unsafe.Pointer(&words[0]))); errno != 0 {
		return *hdr, errno
	}
	return *hdr, nil
}

// encode lays out the ioctl buffer: struct dm_ioctl, then the payload at
// data_start, in one 8-aligned buffer of bufSize bytes.
func encode(name string, flags, targets uint32, payload []byte) []uint64 {
	words := make([]uint64, bufSize/8)
	buf := unsafe.Slice((*byte)(unsafe.Pointer(&words[0])), bufSize)
	hdr := (*unix.DmIoctl)(unsafe.Pointer(&words[0]))
	// Interface version 4.0.0: the kernel accepts any minor not newer than
	// its own, and every kernel since 2.6 speaks 4.x.
	hdr.Version = [3]uint32{4, 0, 0}
	hdr.Data_size = bufSize
	hdr.Data_start = unix.SizeofDmIoctl
	hdr.Flags = flags
	hdr.Target_count = targets
	copy(hdr.Name[:], name)
	copy(buf[unix.SizeofDmIoctl:], payload)
	return words
}

// tablePayload is DM_TABLE_LOAD's payload for one target over the whole
// device: struct dm_target_spec, then its parameter string.
func tablePayload(target string, sectors uint64, params string) []byte {
	spec := unix.DmTargetSpec{Sector_start: 0, Length: sectors}
	copy(spec.Target_type[:], target)
	return append(unsafe.Slice((*byte)(unsafe.Pointer(&spec)), unix.SizeofDmTargetSpec), params+"\x00"...)
}

// Device is a device-mapper device made by CreateLogWrites.
type Device struct {
	Name string // the dm name, for Mark and Remove
	Path string // its block device node, /dev/dm-N
}

// CreateLogWrites makes a device called name that passes all I/O to dev and
// logs every write to logDev ("log-writes DEV LOGDEV"), and returns it
// resumed (usable). The log starts at the table load: the log device's
// super block is written then, and every write after it is logged, so the
// contents of dev at this moment are the log's base.
func CreateLogWrites(name, dev, logDev string) (Device, error) {
	sectors, err := sizeSectors(dev)
	if err != nil {
		return Device{}, err
	}
	for _, p := range []string{dev, logDev} {
		if strings.ContainsAny(p, " \t\n") {
			return Device{}, fmt.Errorf("device-mapper: device path %q has white space", p)
		}
	}
	created, err := ioctl(unix.DM_DEV_CREATE, name, 0, 0, nil)
	if err != nil {
		return Device{}, fmt.Errorf("create device-mapper device %s: %w", name, err)
	}
	ok := false
	defer func() {
		if !ok {
			_, _ = ioctl(unix.DM_DEV_REMOVE, name, 0, 0, nil)
		}
	}()
	payload := tablePayload(LogWritesTarget, sectors, dev+" "+logDev)
	if _, err := ioctl(unix.DM_TABLE_LOAD, name, 0, 1, payload); err != nil {
		return Device{}, fmt.Errorf("load %s table (%s %s %s): %w (is dm-log-writes loaded?)", name, LogWritesTarget, dev, logDev, err)
	}
	// DM_DEV_SUSPEND without DM_SUSPEND_FLAG resumes: it swaps the loaded
	// table in and makes the device usable.
	if _, err := ioctl(unix.DM_DEV_SUSPEND, name, 0, 0, nil); err != nil {
		return Device{}, fmt.Errorf("resume %s: %w", name, err)
	}
	path := fmt.Sprintf("/dev/dm-%d", unix.Minor(created.Dev))
	if err := waitNode(path, unix.Major(created.Dev), unix.Minor(created.Dev), 5*time.Second); err != nil {
		return Device{}, err
	}
	ok = true
	return Device{Name: name, Path: path}, nil
}

// Mark adds a mark to the log of the log-writes device called name. The
// text must be one word (no white space) of at most 479 bytes; longer text
// is cut by the kernel, so it is refused here instead.
func Mark(name, text string) error {
	if text == "" || strings.ContainsAny(text, " \t\n\x00") {
		return fmt.Errorf("log-writes mark %q: want one word", text)
	}
	if len(text) > 479 {
		return fmt.Errorf("log-writes mark of %d bytes: at most 479", len(text))
	}
	return Message(name, "mark "+text)
}

// Message sends a target message ("dmsetup message NAME 0 MSG").
func Message(name, msg string) error {
	var m unix.DmTargetMsg // sector 0: the device's only target
	payload := append(unsafe.Slice((*byte)(unsafe.Pointer(&m)), unsafe.Sizeof(m)), msg+"\x00"...)
	if _, err := ioctl(unix.DM_TARGET_MSG, name, 0, 0, payload); err != nil {
		return fmt.Errorf("device-mapper message %q to %s: %w", msg, name, err)
	}
	return nil
}

// Remove removes the device called name (it must not be open). For a
// log-writes device the kernel first logs a "dm-log-writes-end" mark and
// writes everything still pending to the log.
func Remove(name string) error {
	if _, err := ioctl(unix.DM_DEV_REMOVE, name, 0, 0, nil); err != nil {
		return fmt.Errorf("remove device-mapper device %s: %w", name, err)
	}
	return nil
}

// sizeSectors is a block device's size in 512-byte sectors.
func sizeSectors(dev string) (uint64, error) {
	f, err := os.Open(dev)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("%s: size: %w", dev, errno)
	}
	if size == 0 || size%512 != 0 {
		return 0, fmt.Errorf("%s: size %d is not a whole number of sectors", dev, size)
	}
	return size / 512, nil
}

// waitNode waits for devtmpfs to make the device's node, and makes it if
// devtmpfs is not there (a test root).
func waitNode(path string, major, minor uint32, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var st unix.Stat_t
		err := unix.Stat(path, &st)
		if err == nil {
			if st.Mode&unix.S_IFMT == unix.S_IFBLK && unix.Major(uint64(st.Rdev)) == major && unix.Minor(uint64(st.Rdev)) == minor {
				return nil
			}
			return fmt.Errorf("%s exists but is not block device %d:%d", path, major, minor)
		}
		if !errors.Is(err, unix.ENOENT) {
			return err
		}
		if time.Now().After(deadline) {
			_ = os.MkdirAll(filepath.Dir(path), 0o755)
			if err := unix.Mknod(path, unix.S_IFBLK|0o600, int(unix.Mkdev(major, minor))); err != nil {
				return fmt.Errorf("%s did not appear and mknod failed: %w", path, err)
			}
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
}
