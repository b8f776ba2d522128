package main

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// spawnMain is "uroute-probe spawn OUTFILE PROG [ARG...]": it starts PROG
// in the background, in a session of its own, with stdin /dev/null and
// stdout and stderr written to OUTFILE (created or truncated before PROG
// starts), prints
//
//	spawned PID OUTFILE
//
// and exits without waiting for it. The QEMU tests start background jobs
// this way instead of typing "PROG > OUTFILE 2>&1 &" into the console
// shell: a job that did not start is an error here, with a status and a
// message, not a missing file found out 50 s later; the pid names what to
// wait for; and the job never shares the console's tty with the shell.
func spawnMain(args []string) error {
	if len(args) < 2 {
		usage()
	}
	outfile, argv := args[0], args[1:]
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	out, err := os.OpenFile(outfile, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	defer out.Close()
	null, err := os.Open(os.DevNull)
	if err != nil {
		return fmt.Errorf("spawn: %w", err)
	}
	defer null.Close()
	// argv[0] is the path found: u-root's busybox binary picks the
	// command by following argv[0]'s symlinks, and "sh" alone names none
	// (/bin/sh -> /bbin/gosh), so "spawn F sh -c ..." would start nothing.
	argv = append([]string{path}, argv[1:]...)
	proc, err := os.StartProcess(path, argv, &os.ProcAttr{
		Files: []*os.File{null, out, out},
		Sys:   &syscall.SysProcAttr{Setsid: true},
	})
	if err != nil {
		return fmt.Errorf("spawn %s: %w", argv[0], err)
	}
	fmt.Printf("spawned %d %s\n", proc.Pid, outfile)
	// Not waited for: when we exit, init reaps it.
	return proc.Release()
}
