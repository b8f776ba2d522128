package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// shutdownMain is "uinit shutdown [-r]": the router's clean power-off or
// reboot. u-root's own shutdown calls reboot(2) at once, which is a power
// cut as far as ifmgrd and the data file system are concerned; this stops
// ifmgrd first (through its supervisor, so it is not restarted), then
// syncs and unmounts /data, and only then reboots or powers off.
func shutdownMain(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("uinit shutdown", flag.ContinueOnError)
	fs.SetOutput(out)
	reboot := fs.Bool("r", false, "reboot instead of powering off")
	wait := fs.Duration("wait", 10*time.Second, "how long to wait for ifmgrd to exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if err := stopSupervised("/proc", *wait); err != nil {
		// Not fatal: the DB survives a cut by design; a clean stop only
		// saves the next boot its recovery work.
		fmt.Fprintf(out, "uinit: shutdown: %v\n", err)
	}
	unix.Sync()
	if err := unix.Unmount(dataDir, 0); err != nil && !errors.Is(err, unix.EINVAL) {
		// EINVAL: not a mount point. Anything else (busy): read-only is
		// as good for the file system's consistency.
		if err := unix.Mount("", dataDir, "", unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
			fmt.Fprintf(out, "uinit: shutdown: unmount %s: %v\n", dataDir, err)
		}
	}
	unix.Sync()
	cmd := unix.LINUX_REBOOT_CMD_POWER_OFF
	if *reboot {
		cmd = unix.LINUX_REBOOT_CMD_RESTART
	}
	fmt.Fprintf(out, "uinit: shutdown: %s\n", map[bool]string{true: "rebooting", false: "powering off"}[*reboot])
	// The line sits in the tty's output buffer until the UART has sent
	// it; reboot(2) does not wait, and the line was seen lost on malta.
	// tcdrain (TCSBRK 1) waits for it. Not a tty (tests): nothing to do.
	if f, ok := out.(*os.File); ok {
		_ = unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
	}
	if err := unix.Reboot(cmd); err != nil {
		fmt.Fprintf(out, "uinit: shutdown: reboot(2): %v\n", err)
		return 1
	}
	return 0
}

// stopSupervised sends SIGTERM to every "uinit supervise" process (each
// passes it on to its program and stops restarting it) and waits until
// they have all exited.
func stopSupervised(proc string, wait time.Duration) error {
	pids, err := supervisorPIDs(proc)
	if err != nil {
		return err
	}
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(wait)
	for _, pid := range pids {
		for syscall.Kill(pid, 0) == nil {
			if time.Now().After(deadline) {
				return fmt.Errorf("supervisor %d still running after %v", pid, wait)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return nil
}

// supervisorPIDs lists the processes whose command line is
// "<anything> supervise ...", read from proc/PID/cmdline.
func supervisorPIDs(proc string) ([]int, error) {
	ents, err := os.ReadDir(proc)
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(proc, e.Name(), "cmdline"))
		if err != nil {
			continue // gone meanwhile
		}
		argv := bytes.Split(bytes.TrimRight(b, "\x00"), []byte{0})
		if len(argv) > 1 && string(argv[1]) == "supervise" {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}
