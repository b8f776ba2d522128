// Command uinit is uroute's boot-time init step. u-root's init (/init)
// mounts the basic file systems, then runs /bin/uinit and waits for it;
// when uinit returns, init starts the shell on the console.
//
// uinit runs a fixed list of steps. Each prints "uinit: <step>: ok" or one
// line "uinit: <step>: <problem>" per problem, and a failing step never
// stops the ones after it: a router that cannot find its data disk still
// routes. The steps are:
//
//	cmdline  name every unknown uroute.* kernel argument (and the known key
//	         it is closest to) and every known one given empty
//	mounts   mount proc, sysfs and devtmpfs where they are not mounted yet
//	modules  load the modules named in /lib/modules/uroute/load-order
//	         (finit_module), each after its dependencies (firmware/kmod)
//	data     mount the data disk (uroute.data=, default /dev/vda) on /data,
//	         read-only if the disk is write-protected, or a tmpfs there
//	         when it cannot be mounted (naming a damaged ext superblock and
//	         its e2fsck repair); uroute.datafs=ubifs or jffs2 makes the disk
//	         flash first (block2mtd, UBI; flash.go); uroute.datalog=/dev/vdb
//	         puts it behind dm-log-writes, logging every write to that disk,
//	         for the crash test (datalog.go)
//	ifmgrd   start a supervisor that runs ifmgrd and restarts it if it exits
//	console  give up the controlling terminal before returning (see
//	         releaseConsole)
//
// "uinit supervise [flags] -- PROG ARGS..." is the supervisor itself: uinit
// starts a copy of itself that way, in its own session, so that ifmgrd keeps
// being watched after uinit has returned to u-root's init.
//
// "uinit shutdown [-r]" is the router's clean power-off (or reboot): it
// stops the supervised ifmgrd, syncs and unmounts /data, then reboot(2)s.
//
// "uinit upgrade IMAGE" and "uinit status" are the A/B firmware upgrade
// and its report, on a router booted by U-Boot (upgrade.go, bootenv.go,
// docs/upgrade.md).
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "supervise" {
		os.Exit(superviseMain(os.Args[2:], os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "shutdown" {
		os.Exit(shutdownMain(os.Args[2:], os.Stderr))
	}
	if len(os.Args) > 1 && os.Args[1] == "upgrade" {
		os.Exit(upgradeMain(os.Args[2:], os.Stdout))
	}
	if len(os.Args) > 1 && os.Args[1] == "status" {
		os.Exit(statusMain(os.Args[2:], os.Stdout))
	}
	fs := flag.NewFlagSet("uinit", flag.ExitOnError)
	root := fs.String("root", "/", "root directory that all paths are taken relative to (for tests)")
	cmdlinePath := fs.String("cmdline", "/proc/cmdline", "kernel command line file")
	noStart := fs.Bool("no-ifmgrd", false, "do not start ifmgrd")
	_ = fs.Parse(os.Args[1:])

	// u-root's init gives uinit the console as stdout and stderr.
	b := &boot{
		Root:  *root,
		Out:   os.Stdout,
		Sys:   linuxSys{},
		Start: startSupervisor,
	}
	cmdline, err := os.ReadFile(*cmdlinePath)
	if err != nil {
		// Not fatal: the defaults apply.
		fmt.Fprintf(b.Out, "uinit: cmdline: %v\n", err)
	}
	b.Cmdline = string(cmdline)
	if *noStart {
		b.Start = nil
	}
	b.Run()
	// Last: give up the console, so that init's shell can have it.
	if err := releaseConsole(); err != nil {
		fmt.Fprintf(b.Out, "uinit: console: %v\n", err)
	} else {
		fmt.Fprintf(b.Out, "uinit: console: ok\n")
	}
}

// boot holds what the steps work on, so tests can point them at a
// temporary directory and a fake kernel.
type boot struct {
	Root    string    // "/" on the device
	Cmdline string    // contents of /proc/cmdline
	Out     io.Writer // the console
	Sys     sys
	// Start starts the ifmgrd supervisor; nil skips the ifmgrd step.
	Start func(argv []string, out io.Writer) error
}

// step is one line of uinit's output.
type step struct {
	name string
	fn   func() error
}

// Run runs every step in order, reporting each, and never stops early.
// It returns the number of steps that failed.
func (b *boot) Run() int {
	steps := []step{
		{"cmdline", b.checkCmdline},
		{"mounts", b.mountPseudo},
		{"modules", b.loadModules},
		{"data", b.mountData},
	}
	if b.Start != nil {
		steps = append(steps, step{"ifmgrd", b.startIfmgrd})
	}
	failed := 0
	for _, s := range steps {
		if err := runStep(s.fn); err != nil {
			failed++
			// One console line per problem, each naming its step.
			for line := range strings.SplitSeq(err.Error(), "\n") {
				fmt.Fprintf(b.Out, "uinit: %s: %s\n", s.name, line)
			}
			continue
		}
		fmt.Fprintf(b.Out, "uinit: %s: ok\n", s.name)
	}
	return failed
}

// runStep turns a panic into an error, so one buggy step cannot take the
// others down with it.
func runStep(fn func() error) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("panic: %v", r)
		}
	}()
	return fn()
}

// path maps an absolute on-device path into b.Root.
func (b *boot) path(p string) string { return filepath.Join(b.Root, p) }

// Paths and the ifmgrd command line that the image is built around.
const (
	boardProfile = "/etc/uroute/board.toml"
	dataDir      = "/data"
	dbPath       = "/data/uroute/ifmgr.db"
	runDir       = "/run"
	socketPath   = "/run/ifmgr.sock"
	ifmgrdPath   = "/bin/ifmgrd"
)

// ifmgrdArgv is the command the supervisor runs.
func ifmgrdArgv() []string {
	return []string{ifmgrdPath, "--config", boardProfile, "--db", dbPath, "--socket", socketPath}
}

// startIfmgrd makes /run and the database directory and hands ifmgrd to the
// supervisor.
func (b *boot) startIfmgrd() error {
	if err := os.MkdirAll(b.path(runDir), 0o755); err != nil {
		return err
	}
	// /data is mounted (or a tmpfs) by now; a failure here shows up again
	// as ifmgrd's own error, so it is not fatal.
	_ = os.MkdirAll(b.path(filepath.Dir(dbPath)), 0o700)
	if _, err := os.Stat(b.path(ifmgrdPath)); err != nil {
		return err
	}
	return b.Start(ifmgrdArgv(), b.Out)
}

// Restart policy of the supervisor (see supervise.go).
const (
	defaultMaxRestarts = 10
	defaultBackoff     = time.Second
	defaultMaxBackoff  = 30 * time.Second
	defaultStableAfter = time.Minute
)
