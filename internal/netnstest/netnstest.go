// Package netnstest runs a package's tests inside a throw-away network
// namespace, so tests can create and destroy real links without touching the
// host. The namespace dies with the test process, and the kernel tears its
// links down in one batch, which is far faster than deleting them one by one.
//
// Under qemu-user emulation (internal/qemuuser: UROUTE_QEMU_USER is set) there
// is no kernel of the test's architecture to talk netlink to: Main runs the
// tests in place and Require skips the real-kernel ones.
package netnstest

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"testing"

	"github.com/uroute/uroute/internal/qemuuser"
)

const envMarker = "UROUTE_IN_TEST_NETNS"

// Main is called from a package's TestMain. As root it re-executes the test
// binary in a fresh network namespace (with loopback up) and exits with its
// status; without root, or under qemu-user emulation, it runs the tests in
// place, and real-kernel tests skip themselves through Require.
func Main(m *testing.M) {
	if os.Getenv(envMarker) == "1" || os.Geteuid() != 0 || qemuuser.Active() {
		os.Exit(m.Run())
	}
	cmd := exec.Command("/proc/self/exe", os.Args[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Env = append(os.Environ(), envMarker+"=1")
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Run(); err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			os.Exit(ee.ExitCode())
		}
		fmt.Fprintln(os.Stderr, "netnstest: re-exec in a new network namespace:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// Require skips a test that needs the real kernel when the process is not
// inside the throw-away namespace Main creates (that is, not root, or under
// qemu-user emulation).
func Require(t testing.TB) {
	t.Helper()
	if qemuuser.Active() {
		t.Skip(qemuuser.Reason)
	}
	if os.Getenv(envMarker) != "1" {
		t.Skip("needs root: real-kernel test runs only inside a throw-away network namespace")
	}
}

// Inside reports whether this process runs in the throw-away namespace.
func Inside() bool { return os.Getenv(envMarker) == "1" }
