package main

import (
	"errors"
	"os"
	"os/signal"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sys is the part of the kernel that uinit changes. Tests replace it.
type sys interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	FinitModule(fd int, params string, flags int) error
	// WriteFile writes value to an existing file (a sysfs attribute) in
	// one write(2), as the kernel wants parameters.
	WriteFile(path, value string) error
	// UBIAttach runs UBI_IOCATT on the UBI control device ctrl; the kernel
	// writes the new device's number to req.UBINum.
	UBIAttach(ctrl string, req *ubiAttachReq) error
	// UBIMkvol runs UBI_IOCMKVOL on the UBI device dev.
	UBIMkvol(dev string, req *ubiMkvolReq) error
}

type linuxSys struct{}

func (linuxSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

func (linuxSys) FinitModule(fd int, params string, flags int) error {
	return unix.FinitModule(fd, params, flags)
}

func (linuxSys) WriteFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.Write([]byte(value))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

func (linuxSys) UBIAttach(ctrl string, req *ubiAttachReq) error {
	return ioctlPath(ctrl, unix.UBI_IOCATT, unsafe.Pointer(req))
}

func (linuxSys) UBIMkvol(dev string, req *ubiMkvolReq) error {
	return ioctlPath(dev, unix.UBI_IOCMKVOL, unsafe.Pointer(req))
}

// ioctlPath opens path and runs one ioctl on it with a pointer argument.
// The request numbers are untyped constants that do not fit an int on
// 32-bit MIPS (0x80186f40), hence uintptr.
func ioctlPath(path string, req uintptr, arg unsafe.Pointer) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	// f.Fd() puts the file in blocking mode, fine for a char device.
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), req, uintptr(arg)); errno != 0 {
		return errno
	}
	return nil
}

// releaseConsole drops uinit's controlling terminal (TIOCNOTTY on stdin).
//
// u-root's init starts uinit as a session leader with the console as its
// controlling terminal. When a session leader exits while it still has a
// (non-pty) controlling terminal, the kernel hangs up that terminal for
// every open file, including the ones init has already opened for the
// shell it starts next: the shell then dies at once and init, with nothing
// left to run, exits and the kernel panics. Giving the terminal up first
// avoids the hangup. TIOCNOTTY sends SIGHUP to our own process group, so
// SIGHUP is ignored before.
func releaseConsole() error {
	signal.Ignore(syscall.SIGHUP)
	err := unix.IoctlSetInt(0, unix.TIOCNOTTY, 0)
	if errors.Is(err, unix.ENOTTY) {
		return nil // no controlling terminal: nothing to release
	}
	return err
}
