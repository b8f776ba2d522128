package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uroute/uroute/firmware/fwimage"
)

// The U-Boot A/B side of uinit (docs/upgrade.md): which slot U-Boot
// booted, where the slots and the boot environment are on the flash, and
// marking a slot good. The boot script (firmware/uboot/boot.cmd) passes
// uroute.slot=A|B and uroute.skipped=<slots it passed over> on the kernel
// command line; the flash partitions are found by their GPT names.

// abBoot is what the boot script told the kernel.
type abBoot struct {
	Slot    string // "A" or "B"
	Skipped string // slots tried first that had no attempts left or failed to boot, e.g. "B"
}

// errNotAB: the system was not booted by uroute's U-Boot script (amd64,
// malta, or a -kernel boot), so there are no slots to upgrade.
var errNotAB = errors.New("not booted from an A/B slot by U-Boot (no uroute.slot= on the kernel command line)")

func abBootFrom(cmdline string) (abBoot, error) {
	p := parseCmdline(cmdline)
	b := abBoot{Slot: p["uroute.slot"], Skipped: p["uroute.skipped"]}
	if b.Slot == "" {
		return b, errNotAB
	}
	if !fwimage.ValidSlot(b.Slot) {
		return b, fmt.Errorf("uroute.slot=%q: want A or B", b.Slot)
	}
	return b, nil
}

// Partition names of the flash layout (scripts/make-flash.sh).
const (
	partEnv = "uboot-env"
)

func slotPartition(slot string) string { return "slot-" + strings.ToLower(slot) }

// flash finds the layout's partitions through sysfs; the fields are
// replaced in tests.
type flash struct {
	SysBlock string // /sys/class/block
	Dev      string // /dev
}

var deviceFlash = flash{SysBlock: "/sys/class/block", Dev: "/dev"}

// partition is the device node and size of the partition named name.
func (f flash) partition(name string) (dev string, size int64, err error) {
	ents, err := os.ReadDir(f.SysBlock)
	if err != nil {
		return "", 0, err
	}
	for _, e := range ents {
		uevent, err := os.ReadFile(filepath.Join(f.SysBlock, e.Name(), "uevent"))
		if err != nil {
			continue
		}
		vars := map[string]string{}
		sc := bufio.NewScanner(strings.NewReader(string(uevent)))
		for sc.Scan() {
			k, v, _ := strings.Cut(sc.Text(), "=")
			vars[k] = v
		}
		if vars["PARTNAME"] != name || vars["DEVNAME"] == "" {
			continue
		}
		sectors, err := os.ReadFile(filepath.Join(f.SysBlock, e.Name(), "size"))
		if err != nil {
			return "", 0, err
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(sectors)), 10, 64)
		if err != nil {
			return "", 0, fmt.Errorf("%s size: %w", e.Name(), err)
		}
		return filepath.Join(f.Dev, vars["DEVNAME"]), n * 512, nil
	}
	return "", 0, fmt.Errorf("no partition named %q (is this the A/B flash layout of scripts/make-flash.sh?)", name)
}

// openEnv opens the boot environment partition for reading and writing.
func (f flash) openEnv() (*os.File, fwimage.EnvStore, error) {
	dev, size, err := f.partition(partEnv)
	if err != nil {
		return nil, fwimage.EnvStore{}, err
	}
	if size < fwimage.EnvCopies*fwimage.EnvSize {
		return nil, fwimage.EnvStore{}, fmt.Errorf("%s: %d bytes, too small for %d env copies", dev, size, fwimage.EnvCopies)
	}
	fd, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return nil, fwimage.EnvStore{}, err
	}
	return fd, fwimage.EnvStore{Dev: fd}, nil
}

// readSlotFIT reads the FIT in slot, as far as its header says it goes.
// verify checks its hashes too.
func (f flash) readSlotFIT(slot string, verify bool) ([]byte, fwimage.Info, error) {
	dev, size, err := f.partition(slotPartition(slot))
	if err != nil {
		return nil, fwimage.Info{}, err
	}
	fd, err := os.Open(dev)
	if err != nil {
		return nil, fwimage.Info{}, err
	}
	defer fd.Close()
	b, err := readFIT(fd, size)
	if err != nil {
		return nil, fwimage.Info{}, fmt.Errorf("slot %s (%s): %w", slot, dev, err)
	}
	parse := fwimage.ReadFITInfo
	if verify {
		parse = fwimage.ParseFIT
	}
	info, err := parse(b)
	if err != nil {
		return nil, fwimage.Info{}, fmt.Errorf("slot %s (%s): %w", slot, dev, err)
	}
	return b, info, nil
}

// readFIT reads a FIT from the start of r, which holds at most max bytes.
func readFIT(r io.ReaderAt, max int64) ([]byte, error) {
	hdr := make([]byte, 40)
	if _, err := r.ReadAt(hdr, 0); err != nil {
		return nil, err
	}
	n, err := fwimage.FITSize(hdr)
	if err != nil {
		return nil, err
	}
	if n > max {
		return nil, fmt.Errorf("%w: header says %d bytes, the slot holds %d", fwimage.ErrFIT, n, max)
	}
	b := make([]byte, n)
	if _, err := r.ReadAt(b, 0); err != nil {
		return nil, err
	}
	return b, nil
}

// markGood records that the booted slot works: its attempts back to the
// maximum, first in BOOT_ORDER, no longer on trial. If the boot script
// passed over the slot an upgrade was trying, that was a rollback, and it
// stays recorded (uroute_rollback) for status until the next upgrade.
func markGood(f flash, b abBoot) (fwimage.State, error) {
	fd, store, err := f.openEnv()
	if err != nil {
		return fwimage.State{}, err
	}
	defer fd.Close()
	cur, _ := store.Load() // no valid copy: start from the factory state
	env := fwimage.Env{}
	for k, v := range cur.Env {
		env[k] = v
	}
	other := fwimage.Other(b.Slot)
	env.SetLeft(b.Slot, fwimage.MaxAttempts)
	env[fwimage.VarOrder] = b.Slot + " " + other
	if trial := env[fwimage.VarTrial]; trial != "" {
		if trial == other && strings.Contains(b.Skipped, other) {
			env[fwimage.VarRollback] = other
		}
		delete(env, fwimage.VarTrial)
	}
	return store.Save(cur, env)
}

// Boot check policy: a trial boot whose ifmgrd exits this many times
// without having converged, or has not converged after trialDeadline, is
// a failed attempt: the system reboots so that U-Boot counts it (the
// counter was decremented before the boot) and in the end falls back.
const (
	trialMaxExits = 3
	trialDeadline = 5 * time.Minute
	ifctlPath     = "/bin/ifctl"
)

// converged reports whether ifmgrd serves with the board profile in force
// and has nothing left to do for it: ifmgrd's own status says so
// (ifmgr.Status.Converged: no pending, refused or queued work, no rejected
// profile).
func converged() error {
	out, err := exec.Command(ifctlPath, "--socket", socketPath, "status", "-j").Output()
	if err != nil {
		return fmt.Errorf("ifctl status: %w", err)
	}
	return convergedStatus(out)
}

// convergedStatus reads ifctl status -j: nil if ifmgrd says it has
// converged on the profile, else what it still waits for.
func convergedStatus(statusJSON []byte) error {
	// ifmgr.Status's fields that say it, decoded here so that uinit does
	// not link ifmgr (and netlink) into the image a second time; the test
	// feeds it ifmgr.Status itself, so a renamed field fails there.
	var st struct {
		Profile    string            `json:"profile"`
		Rejected   string            `json:"profile_rejected"`
		Converged  *bool             `json:"converged"`
		Pending    int               `json:"pending_actions"`
		Refused    []json.RawMessage `json:"refused"`
		EventDepth int               `json:"event_queue_depth"`
	}
	if err := json.Unmarshal(statusJSON, &st); err != nil {
		return fmt.Errorf("ifctl status: %w", err)
	}
	switch {
	case st.Converged == nil:
		return fmt.Errorf("ifctl status has no \"converged\": an ifmgrd older than this uinit")
	case st.Profile == "" || st.Rejected != "":
		return fmt.Errorf("no board profile in force (rejected: %q)", st.Rejected)
	case !*st.Converged:
		return fmt.Errorf("not converged on the profile yet: %d actions pending, %d refused, %d event batches queued",
			st.Pending, len(st.Refused), st.EventDepth)
	}
	return nil
}

// bootCheck runs in ifmgrd's supervisor on an A/B boot: it marks the slot
// good once ifmgrd has converged, and ends a trial boot that cannot get
// there by rebooting. exits receives one value per ifmgrd exit.
func bootCheck(b abBoot, out io.Writer, exits <-chan error) {
	trial := false
	if fd, store, err := deviceFlash.openEnv(); err == nil {
		cur, _ := store.Load()
		trial = cur.Env[fwimage.VarTrial] == b.Slot
		fd.Close()
	}
	start := time.Now()
	failures := 0
	tick := time.NewTicker(2 * time.Second)
	defer tick.Stop()
	var last error
	for {
		select {
		case err := <-exits:
			failures++
			last = fmt.Errorf("ifmgrd exited: %v", err)
		case <-tick.C:
			if last = converged(); last == nil {
				if _, err := markGood(deviceFlash, b); err != nil {
					fmt.Fprintf(out, "uinit: boot: slot %s: ifmgrd converged, but marking the slot good failed: %v\n", b.Slot, err)
					return
				}
				fmt.Fprintf(out, "uinit: boot: slot %s marked good (ifmgrd converged on the profile after %v)\n", b.Slot, time.Since(start).Round(time.Second))
				return
			}
		}
		if !trial && time.Since(start) > trialDeadline {
			// A slot already good that is slow to converge: keep
			// watching, at a pace a router does not notice.
			tick.Reset(30 * time.Second)
		}
		if trial && (failures >= trialMaxExits || time.Since(start) > trialDeadline) {
			fmt.Fprintf(out, "uinit: boot: trial of slot %s failed (%v); rebooting so that U-Boot counts the attempt\n", b.Slot, last)
			cmd := exec.Command(selfPath(), "shutdown", "-r")
			cmd.Stdout, cmd.Stderr = out, out
			cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
			if err := cmd.Start(); err != nil {
				fmt.Fprintf(out, "uinit: boot: reboot: %v\n", err)
			}
			return
		}
	}
}
