// Package qemuuser tells tests that they run under qemu-user emulation, the
// way scripts/test-mips-be.sh runs the unit tests for big-endian MIPS
// (go test -exec qemu-mips-static) on a host with no MIPS kernel.
//
// Detection is explicit: the script sets UROUTE_QEMU_USER, and go test -exec
// passes the environment through to the emulated test binary. Nothing is
// guessed from the process itself (qemu-user disguises /proc/self/exe,
// /proc/self/maps and auxv as the guest's), so a test binary run under an
// emulator without the variable behaves as on real hardware.
package qemuuser

import (
	"os"
	"os/exec"
)

// Env names the variable. Its value is the emulator that runs the test
// binary (a path or a name in $PATH, e.g. qemu-mips-static); "1" marks
// emulation without naming one, for hosts where binfmt_misc runs foreign
// binaries by itself.
const Env = "UROUTE_QEMU_USER"

// Reason is the skip message of a test that needs the real kernel.
const Reason = "needs the real kernel: running under qemu-user emulation (" + Env +
	" is set), whose netlink/rtnetlink translation is partial and which cannot enter a new network namespace"

// Active reports whether the test binary runs under qemu-user emulation.
func Active() bool { return os.Getenv(Env) != "" }

// Command is exec.Command for running a binary of the emulated architecture,
// typically the test binary itself (os.Args[0]) as a child process. Under
// qemu-user without binfmt_misc the host kernel cannot execute it, so it is
// started through the emulator named by UROUTE_QEMU_USER; otherwise, or if
// the variable is "1", the binary is executed directly.
func Command(name string, arg ...string) *exec.Cmd {
	emu := os.Getenv(Env)
	if emu == "" || emu == "1" {
		return exec.Command(name, arg...)
	}
	return exec.Command(emu, append([]string{name}, arg...)...)
}
