package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// startSupervisor starts "uinit supervise -- argv..." as a child in its own
// session, writing to out, and does not wait for it. When uinit returns,
// the supervisor is re-parented to init, which reaps it.
func startSupervisor(argv []string, out io.Writer) error {
	self := selfPath()
	args := append([]string{"supervise", "-boot-check", "--"}, argv...)
	cmd := exec.Command(self, args...)
	cmd.Stdout = out
	cmd.Stderr = out
	// Its own session: the shell's Ctrl-C on the console does not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// selfPath is the path that runs uinit again. In the image uinit is one
// command of a busybox-style binary (/bbin/bb) that picks the command by the
// name it is started as, so /proc/self/exe, the shared binary, would start
// none: argv[0] names it (the busybox resolves it to its last symlink,
// /bbin/uroute-uinit, when started by path; a bare name from the shell is
// found on $PATH, as the shell found it). A standalone build (Buildroot, the
// tests) runs as itself either way.
func selfPath() string {
	if p, err := exec.LookPath(os.Args[0]); err == nil {
		return p
	}
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "/bin/uroute-uinit"
}

// policy is how the supervisor restarts its program.
type policy struct {
	MaxRestarts int           // restarts after quick exits, in a row
	Backoff     time.Duration // first wait before a restart; doubles each time
	MaxBackoff  time.Duration
	StableAfter time.Duration // a run at least this long resets the count and the wait
}

// errStopped is what Run returns once the supervisor was told to stop.
var errStopped = errors.New("stopped")

// supervisor runs a program and restarts it with backoff when it exits.
type supervisor struct {
	Name   string
	Policy policy
	Out    io.Writer
	// Run runs the program once and returns when it has exited.
	Run   func() error
	Sleep func(time.Duration)
	Now   func() time.Time
	// Exited, if set, hears of every exit of the program (the A/B boot
	// check counts them).
	Exited func(error)
}

// Loop runs the program until it has been restarted MaxRestarts times in a
// row without a stable run, or Run returns errStopped. It logs every exit
// and restart, and returns the last exit error.
func (s *supervisor) Loop() error {
	restarts := 0
	wait := s.Policy.Backoff
	for {
		start := s.Now()
		err := s.Run()
		ran := s.Now().Sub(start).Round(time.Millisecond)
		if errors.Is(err, errStopped) {
			fmt.Fprintf(s.Out, "uinit: %s: stopped\n", s.Name)
			return err
		}
		if err == nil {
			err = errors.New("exited with status 0")
		}
		if s.Exited != nil {
			s.Exited(err)
		}
		if ran >= s.Policy.StableAfter {
			restarts = 0
			wait = s.Policy.Backoff
		}
		if restarts >= s.Policy.MaxRestarts {
			fmt.Fprintf(s.Out, "uinit: %s: %v after %v; gave up after %d restarts\n", s.Name, err, ran, restarts)
			return err
		}
		restarts++
		fmt.Fprintf(s.Out, "uinit: %s: %v after %v; restart %d of %d in %v\n", s.Name, err, ran, restarts, s.Policy.MaxRestarts, wait)
		s.Sleep(wait)
		wait *= 2
		if wait > s.Policy.MaxBackoff {
			wait = s.Policy.MaxBackoff
		}
	}
}

// superviseMain is "uinit supervise [flags] -- PROG ARGS...".
func superviseMain(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("uinit supervise", flag.ContinueOnError)
	fs.SetOutput(out)
	var p policy
	fs.IntVar(&p.MaxRestarts, "max-restarts", defaultMaxRestarts, "restarts in a row before giving up")
	fs.DurationVar(&p.Backoff, "backoff", defaultBackoff, "first wait before a restart")
	fs.DurationVar(&p.MaxBackoff, "max-backoff", defaultMaxBackoff, "longest wait before a restart")
	fs.DurationVar(&p.StableAfter, "stable-after", defaultStableAfter, "a run this long resets the restart count")
	check := fs.Bool("boot-check", false, "on a U-Boot A/B boot, mark the slot good once the program (ifmgrd) has converged (bootenv.go)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(out, "uinit supervise: no program given")
		return 2
	}

	// SIGTERM or SIGINT is passed on to the program, and ends the loop.
	var (
		mu       sync.Mutex
		cur      *os.Process
		stopping bool
	)
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		for sig := range sigs {
			mu.Lock()
			stopping = true
			if cur != nil {
				_ = cur.Signal(sig)
			}
			mu.Unlock()
		}
	}()
	s := &supervisor{
		Name:   filepath.Base(argv[0]),
		Policy: p,
		Out:    out,
		Run: func() error {
			cmd := exec.Command(argv[0], argv[1:]...)
			cmd.Stdout = out
			cmd.Stderr = out
			mu.Lock()
			if stopping {
				mu.Unlock()
				return errStopped
			}
			err := cmd.Start()
			if err == nil {
				cur = cmd.Process
			}
			mu.Unlock()
			if err != nil {
				return err
			}
			err = cmd.Wait()
			mu.Lock()
			cur = nil
			if stopping {
				err = errStopped
			}
			mu.Unlock()
			return err
		},
		Sleep: time.Sleep,
		Now:   time.Now,
	}
	if *check {
		if cmdline, err := os.ReadFile("/proc/cmdline"); err == nil {
			if boot, err := abBootFrom(string(cmdline)); err == nil {
				exits := make(chan error, 16)
				s.Exited = func(err error) {
					select {
					case exits <- err:
					default:
					}
				}
				go bootCheck(boot, out, exits)
			}
		}
	}
	if err := s.Loop(); err != nil && !errors.Is(err, errStopped) {
		return 1
	}
	return 0
}
