// Command uroute-qemu boots uroute's image under QEMU the way a router
// boots; scripts/run-qemu.sh is a thin wrapper over it and takes the same
// arguments (see qemu.Usage):
//
//	uroute-qemu ARCH [options] [-- EXTRA-QEMU-ARGS...]
//
// The command line comes from qemu-test/qemu, the one place that builds it.
// The repository (for scripts/fetch-kernel.sh and build-image.sh) is
// $UROUTE_REPO, else the current directory.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"

	"github.com/uroute/uroute/qemu-test/qemu"
)

func main() {
	o, err := qemu.ParseOptions(os.Args[1:])
	if err != nil {
		if !errors.Is(err, qemu.ErrHelp) {
			fmt.Fprintf(os.Stderr, "run-qemu: %v\n", err)
		}
		fmt.Fprint(os.Stderr, qemu.Usage)
		os.Exit(2)
	}
	repo := os.Getenv("UROUTE_REPO")
	if repo == "" {
		repo = "."
	}
	if err := o.Prepare(context.Background(), repo, os.Stderr); err != nil {
		fmt.Fprintf(os.Stderr, "run-qemu: %v\n", err)
		os.Exit(1)
	}
	spec := o.Spec()
	if o.DryRun {
		fmt.Println(spec.String())
		return
	}
	fmt.Fprintf(os.Stderr, "run-qemu: %s\n", strings.Join(append([]string{spec.Machine.QEMU}, spec.Args()...), " "))
	path, err := exec.LookPath(spec.Machine.QEMU)
	if err != nil {
		fmt.Fprintf(os.Stderr, "run-qemu: %v\n", err)
		os.Exit(1)
	}
	if o.Timeout == 0 {
		// QEMU takes this process's place: its signals, its exit status.
		err := syscall.Exec(path, append([]string{spec.Machine.QEMU}, spec.Args()...), os.Environ())
		fmt.Fprintf(os.Stderr, "run-qemu: exec %s: %v\n", path, err)
		os.Exit(1)
	}
	os.Exit(runWithTimeout(spec, o))
}

// runWithTimeout runs QEMU on our stdio and kills it after o.Timeout:
// exit status 124 then, as timeout(1) gives.
func runWithTimeout(spec qemu.Spec, o qemu.Options) int {
	ctx, cancel := context.WithTimeout(context.Background(), o.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, spec.Machine.QEMU, spec.Args()...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5e9
	// Ctrl-C reaches QEMU (same process group) directly; we only wait.
	signal.Ignore(os.Interrupt)
	err := cmd.Run()
	if ctx.Err() != nil {
		fmt.Fprintf(os.Stderr, "run-qemu: timed out after %v\n", o.Timeout)
		return 124
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ee.ExitCode() >= 0 {
			return ee.ExitCode()
		}
		return 128 + int(ee.Sys().(syscall.WaitStatus).Signal())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "run-qemu: %v\n", err)
		return 1
	}
	return 0
}
