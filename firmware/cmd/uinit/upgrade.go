package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/uroute/uroute/firmware/fwimage"
)

// "uinit upgrade [flags] IMAGE" writes a signed image (scripts/sign-image.sh)
// to the slot that did not boot and makes the next boot try it, with a
// bounded number of attempts; "uinit status" says which slot booted and
// why. docs/upgrade.md has the design; the order of the writes is what
// makes a power cut at any point harmless:
//
//  1. check everything, touching nothing: signature by a trusted key, FIT
//     structure, every hash, the board and architecture;
//  2. disarm the target slot in the boot environment (0 attempts), so a
//     half-written slot is never booted;
//  3. write the FIT to the slot, sync, drop the cached copy and read it
//     back from the device;
//  4. arm it: the target first in BOOT_ORDER with N attempts, on trial.
//
// Each env write goes to the other of its two copies (fwimage.EnvStore).

// trustedKeys is the file of public keys upgrades must be signed with
// (build-image.sh UPGRADE_KEYS).
const trustedKeys = "/etc/uroute/upgrade.pub"

// buildArch is build-image.sh's name for the architecture uinit runs on.
func buildArch() string { return buildArchOf(runtime.GOARCH) }

// buildArchOf maps a GOARCH to build-image.sh's ARCH, the uroute,arch of
// the FITs build-fit.sh makes for it (GOARM=7 builds are "armv7"; mipsle
// is the EdgeRouter X's, GOMIPS=softfloat). Any other GOARCH maps to
// itself, which no FIT of ours names: an upgrade there is refused as for
// another architecture.
func buildArchOf(goarch string) string {
	if goarch == "arm" {
		return "armv7"
	}
	return goarch
}

// stopPoints are where -stop-at halts an upgrade (fault injection for the
// power-cut tests: the test cuts power while the upgrade waits there).
var stopPoints = []string{"disarmed", "half-written", "written", "torn-env"}

type upgrade struct {
	Flash    flash
	Cmdline  string
	Keys     string // trusted keys file
	Attempts int
	StopAt   string
	Out      io.Writer
}

func upgradeMain(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("uinit upgrade", flag.ContinueOnError)
	fs.SetOutput(out)
	u := upgrade{Flash: deviceFlash, Keys: trustedKeys, Out: out}
	fs.IntVar(&u.Attempts, "attempts", fwimage.MaxAttempts, "boots the new image gets to mark itself good before U-Boot falls back")
	fs.StringVar(&u.StopAt, "stop-at", "", "fault injection: stop and wait at one of "+strings.Join(stopPoints, ", "))
	fs.Usage = func() {
		fmt.Fprintln(out, "usage: uroute-uinit upgrade [-attempts N] IMAGE|DEVICE")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 1 || u.Attempts < 1 || u.Attempts > 15 {
		fs.Usage()
		return 2
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fmt.Fprintf(out, "upgrade: %v\n", err)
		return 1
	}
	u.Cmdline = string(cmdline)
	if err := u.Run(fs.Arg(0)); err != nil {
		fmt.Fprintf(out, "upgrade: refused: %v\n", err)
		return 1
	}
	return 0
}

// Run upgrades from path, a signed image file or a block device holding
// one at its start.
func (u upgrade) Run(path string) error {
	boot, err := abBootFrom(u.Cmdline)
	if err != nil {
		return err
	}
	// 1. Check, writing nothing.
	keysText, err := os.ReadFile(u.Keys)
	if err != nil {
		return fmt.Errorf("%w: no trusted keys: %v", fwimage.ErrSignature, err)
	}
	keys, err := fwimage.ParsePublicKeys(string(keysText))
	if err != nil {
		return fmt.Errorf("%w: %s: %v", fwimage.ErrSignature, u.Keys, err)
	}
	signed, err := readSigned(path)
	if err != nil {
		return err
	}
	fit, err := fwimage.VerifySigned(signed, keys)
	if err != nil {
		return err
	}
	info, err := fwimage.ParseFIT(fit)
	if err != nil {
		return err
	}
	_, running, err := u.Flash.readSlotFIT(boot.Slot, false)
	if err != nil {
		return fmt.Errorf("reading the running image: %w", err)
	}
	if err := fwimage.CheckTarget(info, running.Board, buildArch()); err != nil {
		return err
	}
	target := fwimage.Other(boot.Slot)
	dev, size, err := u.Flash.partition(slotPartition(target))
	if err != nil {
		return err
	}
	if int64(len(fit)) > size {
		return fmt.Errorf("image is %d bytes, slot %s holds %d", len(fit), target, size)
	}
	fmt.Fprintf(u.Out, "upgrade: %s: signed, %s, for %s (%s); writing slot %s (%s)\n",
		path, info.Version, info.Board, info.Arch, target, dev)

	envFile, store, err := u.Flash.openEnv()
	if err != nil {
		return err
	}
	defer envFile.Close()
	cur, err := store.Load()
	if err != nil {
		fmt.Fprintf(u.Out, "upgrade: %v; starting from the factory state\n", err)
	}

	// 2. Disarm the target slot.
	env := copyEnv(cur.Env)
	env.SetLeft(target, 0)
	env[fwimage.VarOrder] = boot.Slot + " " + target
	delete(env, fwimage.VarTrial)
	if cur, err = store.Save(cur, env); err != nil {
		return fmt.Errorf("disarm slot %s: %w", target, err)
	}
	u.stop("disarmed")

	// 3. Write and read back.
	if err := u.writeSlot(dev, fit); err != nil {
		return fmt.Errorf("slot %s: %w (slot left disarmed; slot %s still boots)", target, err, boot.Slot)
	}
	u.stop("written")

	// 4. Arm.
	env = copyEnv(cur.Env)
	env.SetLeft(target, u.Attempts)
	env[fwimage.VarOrder] = target + " " + boot.Slot
	env[fwimage.VarTrial] = target
	delete(env, fwimage.VarRollback)
	if u.StopAt == "torn-env" {
		// The power goes while the new copy is being written: its CRC
		// and the first bytes of its variables reach the flash, the rest
		// is still the copy it replaces. (Tearing it later would not
		// show: the variables fill only the block's first bytes, and
		// both copies are zero after them.)
		torn := store
		torn.Dev = tornWriter{envFile, 16}
		_, _ = torn.Save(cur, env)
		u.stop("torn-env")
	}
	if _, err := store.Save(cur, env); err != nil {
		return fmt.Errorf("arm slot %s: %w", target, err)
	}
	fmt.Fprintf(u.Out, "upgrade: done: the next boot tries slot %s (%s) up to %d times, then falls back to slot %s; reboot to switch\n",
		target, info.Version, u.Attempts, boot.Slot)
	return nil
}

// readSigned reads a signed image from a file, or from the start of a
// block device (an upgrade medium written with dd), where it ends where
// its FIT header and trailer say.
func readSigned(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if st.Mode().IsRegular() {
		return io.ReadAll(f)
	}
	// A device: drop what the kernel cached of it, so a medium rewritten
	// since is read as it is now.
	_ = unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0)
	hdr := make([]byte, 40)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	n, err := fwimage.FITSize(hdr)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	b := make([]byte, n+int64(fwimage.TrailerSize))
	if _, err := f.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

// writeSlot writes fit to the slot device, syncs, and reads it back past
// the page cache.
func (u upgrade) writeSlot(dev string, fit []byte) error {
	f, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	half := len(fit) / 2
	if _, err := f.WriteAt(fit[:half], 0); err != nil {
		return err
	}
	if u.StopAt == "half-written" {
		if err := f.Sync(); err != nil {
			return err
		}
		u.stop("half-written")
	}
	if _, err := f.WriteAt(fit[half:], int64(half)); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if st, err := f.Stat(); err == nil && st.Mode()&os.ModeDevice != 0 {
		if err := unix.IoctlSetInt(int(f.Fd()), unix.BLKFLSBUF, 0); err != nil {
			return fmt.Errorf("drop cached blocks before the read-back: %w", err)
		}
	}
	back := make([]byte, len(fit))
	if _, err := f.ReadAt(back, 0); err != nil {
		return fmt.Errorf("read back: %w", err)
	}
	if sha256.Sum256(back) != sha256.Sum256(fit) {
		return errors.New("read back differs from what was written")
	}
	return nil
}

// stop waits forever at point p if -stop-at names it.
func (u upgrade) stop(p string) {
	if u.StopAt != p {
		return
	}
	fmt.Fprintf(u.Out, "upgrade: stopped at %s\n", p)
	select {}
}

// tornWriter writes only the first n bytes of each write: a power cut in
// the middle of a flash write.
type tornWriter struct {
	f *os.File
	n int
}

func (t tornWriter) ReadAt(b []byte, off int64) (int, error) { return t.f.ReadAt(b, off) }
func (t tornWriter) Sync() error                             { return t.f.Sync() }
func (t tornWriter) WriteAt(b []byte, off int64) (int, error) {
	if len(b) > t.n {
		b = b[:t.n]
	}
	return t.f.WriteAt(b, off)
}

func copyEnv(e fwimage.Env) fwimage.Env {
	c := fwimage.Env{}
	for k, v := range e {
		c[k] = v
	}
	return c
}

// bootStatus is "uinit status -j".
type bootStatus struct {
	Slot     string                 `json:"slot"`              // the slot U-Boot booted
	Version  string                 `json:"version,omitempty"` // its image's
	Board    string                 `json:"board,omitempty"`
	Why      string                 `json:"why"` // why this slot
	Good     bool                   `json:"good"`
	Trial    string                 `json:"trial,omitempty"`
	Rollback string                 `json:"rollback,omitempty"`
	Order    string                 `json:"boot_order"`
	Left     map[string]int         `json:"attempts_left"`
	Slots    map[string]slotSummary `json:"slots"`
	EnvGen   uint64                 `json:"env_generation"`
	EnvError string                 `json:"env_error,omitempty"`
}

type slotSummary struct {
	Version string `json:"version,omitempty"`
	Error   string `json:"error,omitempty"`
}

func statusOf(f flash, cmdline string) (bootStatus, error) {
	boot, err := abBootFrom(cmdline)
	if err != nil {
		return bootStatus{}, err
	}
	st := bootStatus{Slot: boot.Slot, Left: map[string]int{}, Slots: map[string]slotSummary{}}
	for _, s := range fwimage.Slots {
		_, info, err := f.readSlotFIT(s, false)
		if err != nil {
			st.Slots[s] = slotSummary{Error: err.Error()}
			continue
		}
		st.Slots[s] = slotSummary{Version: info.Version}
		if s == boot.Slot {
			st.Version, st.Board = info.Version, info.Board
		}
	}
	envFile, store, err := f.openEnv()
	if err != nil {
		return st, err
	}
	defer envFile.Close()
	cur, err := store.Load()
	if err != nil {
		st.EnvError = err.Error()
	}
	st.EnvGen = cur.Gen
	st.Order = cur.Env[fwimage.VarOrder]
	st.Trial = cur.Env[fwimage.VarTrial]
	st.Rollback = cur.Env[fwimage.VarRollback]
	for _, s := range fwimage.Slots {
		st.Left[s] = cur.Left(s)
	}
	st.Good = st.Trial != boot.Slot && st.Left[boot.Slot] == fwimage.MaxAttempts && strings.HasPrefix(st.Order, boot.Slot)
	other := fwimage.Other(boot.Slot)
	switch {
	case strings.Contains(boot.Skipped, other) && (st.Trial == other || st.Rollback == other):
		st.Why = fmt.Sprintf("rollback: slot %s (%s) used up its boot attempts without marking itself good", other, st.Slots[other].Version)
	case strings.Contains(boot.Skipped, other):
		st.Why = fmt.Sprintf("fallback: slot %s did not boot", other)
	case st.Trial == boot.Slot:
		st.Why = fmt.Sprintf("trial boot of an upgrade: not marked good yet (%d attempts left)", st.Left[boot.Slot])
	default:
		st.Why = "first in BOOT_ORDER"
	}
	return st, nil
}

func statusMain(args []string, out io.Writer) int {
	fs := flag.NewFlagSet("uinit status", flag.ContinueOnError)
	fs.SetOutput(out)
	asJSON := fs.Bool("j", false, "JSON")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	cmdline, err := os.ReadFile("/proc/cmdline")
	if err != nil {
		fmt.Fprintf(out, "status: %v\n", err)
		return 1
	}
	st, err := statusOf(deviceFlash, string(cmdline))
	if err != nil {
		fmt.Fprintf(out, "status: %v\n", err)
		return 1
	}
	if *asJSON {
		b, _ := json.Marshal(st)
		fmt.Fprintln(out, string(b))
		return 0
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "booted slot %s: %s (%s)\n", st.Slot, st.Version, st.Board)
	fmt.Fprintf(&b, "why: %s\n", st.Why)
	fmt.Fprintf(&b, "marked good: %v\n", st.Good)
	fmt.Fprintf(&b, "BOOT_ORDER=%s  attempts left: A=%d B=%d\n", st.Order, st.Left["A"], st.Left["B"])
	for _, s := range fwimage.Slots {
		if e := st.Slots[s].Error; e != "" {
			fmt.Fprintf(&b, "slot %s: %s\n", s, e)
		} else {
			fmt.Fprintf(&b, "slot %s: %s\n", s, st.Slots[s].Version)
		}
	}
	_, _ = out.Write(b.Bytes())
	return 0
}
