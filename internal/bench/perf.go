package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// perfRecord is a system-wide `perf record -a -g` around one timed run
// (-perf-dir): the kernel's side of a contender's work, to compare with
// another contender's. perf starts with its events disabled and is enabled
// through its control FIFO just before the run starts, so its own start-up
// is not in the profile (nor in the time); its cost during the run is the
// same for every contender.
type perfRecord struct {
	cmd      *exec.Cmd
	ctl, ack *os.File
	dir      string
}

func startPerf(out string) (*perfRecord, error) {
	dir, err := os.MkdirTemp("", "bench-perf.")
	if err != nil {
		return nil, err
	}
	p := &perfRecord{dir: dir}
	ctlPath, ackPath := filepath.Join(dir, "ctl"), filepath.Join(dir, "ack")
	for _, f := range []string{ctlPath, ackPath} {
		if err := syscall.Mkfifo(f, 0o600); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	p.cmd = exec.Command("perf", "record", "-a", "-g", "-q", "-D", "-1", "-o", out,
		"--control", "fifo:"+ctlPath+","+ackPath)
	p.cmd.Stderr = os.Stderr
	if err := p.cmd.Start(); err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	// O_RDWR: opening a FIFO so never blocks on the other end.
	if p.ctl, err = os.OpenFile(ctlPath, os.O_RDWR, 0); err == nil {
		p.ack, err = os.OpenFile(ackPath, os.O_RDWR, 0)
	}
	if err == nil {
		err = p.command("enable")
	}
	if err != nil {
		p.stop()
		return nil, err
	}
	return p, nil
}

// command sends one control command and waits for perf's "ack".
func (p *perfRecord) command(c string) error {
	if _, err := p.ctl.WriteString(c + "\n"); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 16)
		n, err := p.ack.Read(buf)
		if err == nil && !strings.HasPrefix(string(buf[:n]), "ack") {
			err = fmt.Errorf("perf answered %q to %s", buf[:n], c)
		}
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(30 * time.Second):
		return fmt.Errorf("perf did not ack %s", c)
	}
}

func (p *perfRecord) stop() {
	if p.ctl != nil {
		p.command("disable")
	}
	p.cmd.Process.Signal(syscall.SIGINT)
	p.cmd.Wait()
	if p.ctl != nil {
		p.ctl.Close()
	}
	if p.ack != nil {
		p.ack.Close()
	}
	os.RemoveAll(p.dir)
}
