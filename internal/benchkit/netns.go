// Package benchkit is what scripts/bench and scripts/soak share: throw-away
// network namespaces, a watcher that tells when the kernel reached a state
// (and when each link got there), the RTNL-quiet wait between measurements,
// and /proc sampling of a daemon. Nothing here is part of the router image.
package benchkit

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NS is a named network namespace (/run/netns/Name) made with `ip netns add`,
// so ip -n, ip netns exec and the bench's own sockets all reach it.
type NS struct{ Name string }

// NewNS adds the namespace and brings its loopback up.
func NewNS(name string) (*NS, error) {
	_ = exec.Command("ip", "netns", "del", name).Run() // a leftover of a killed run
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("ip netns add %s: %v: %s", name, err, out)
	}
	ns := &NS{Name: name}
	if err := ns.IP("link", "set", "lo", "up"); err != nil {
		ns.Delete()
		return nil, err
	}
	return ns, nil
}

// IP runs one `ip -n NS ...` command.
func (ns *NS) IP(args ...string) error {
	out, err := exec.Command("ip", append([]string{"-n", ns.Name}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s %s: %v: %s", ns.Name, strings.Join(args, " "), err, out)
	}
	return nil
}

// Batch runs `ip -n NS -batch -` with the given lines on stdin.
func (ns *NS) Batch(lines []string) error {
	cmd := exec.Command("ip", "-n", ns.Name, "-batch", "-")
	cmd.Stdin = strings.NewReader(strings.Join(lines, "\n") + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip -n %s -batch (%d lines): %v: %s", ns.Name, len(lines), err, out)
	}
	return nil
}

// Command is a command run inside the namespace (ip netns exec, which also
// gives it a mount namespace with this namespace's /sys).
func (ns *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", ns.Name, name}, args...)...)
}

// Delete removes the name; the kernel tears the namespace down afterwards,
// asynchronously (see WaitQuiet).
func (ns *NS) Delete() error {
	out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip netns del %s: %v: %s", ns.Name, err, out)
	}
	return nil
}

// Do runs f on an OS thread that has entered the namespace. Sockets opened
// in f stay in the namespace for their whole life, whatever thread uses them
// later.
func (ns *NS) Do(f func() error) error {
	runtime.LockOSThread()
	orig, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer orig.Close()
	target, err := os.Open("/run/netns/" + ns.Name)
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer target.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("enter netns %s: %w", ns.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays locked, and so dies with its goroutine, rather
		// than serve other goroutines from the wrong namespace.
		return errors.Join(ferr, fmt.Errorf("leave netns %s: %w", ns.Name, err))
	}
	runtime.UnlockOSThread()
	return ferr
}
