package main

import (
	"errors"
	"os/signal"
	"syscall"

	"golang.org/x/sys/unix"
)

// sys is the part of the kernel that uinit changes. Tests replace it.
type sys interface {
	Mount(source, target, fstype string, flags uintptr, data string) error
	FinitModule(fd int, params string, flags int) error
}

type linuxSys struct{}

func (linuxSys) Mount(source, target, fstype string, flags uintptr, data string) error {
	return unix.Mount(source, target, fstype, flags, data)
}

func (linuxSys) FinitModule(fd int, params string, flags int) error {
	return unix.FinitModule(fd, params, flags)
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
