package qemu

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Usage is scripts/run-qemu.sh's (and uroute-qemu's) usage text.
const Usage = `usage: scripts/run-qemu.sh ARCH [options] [-- EXTRA-QEMU-ARGS...]

  ARCH: amd64 (q35, ttyS0) | arm64 (virt, cortex-a57, ttyAMA0)
        armv7 (virt,highmem=off, cortex-a15, ttyAMA0) | mipsle (malta, ttyS0)

Options:
  --kernel FILE     kernel to boot (default: scripts/fetch-kernel.sh ARCH
                    into $UROUTE_CACHE/kernel-ARCH)
  --initrd FILE     initramfs (default: scripts/build-image.sh ARCH with
                    the board profile $BOARD, default qemu-ARCH, and
                    MODULES_DIR=$UROUTE_CACHE/kernel-ARCH/modules, cached in
                    $UROUTE_CACHE/images by a hash of its inputs: built
                    only when a source, the profile or a module changed)
  --reuse           use the cached kernel if present instead of running
                    fetch-kernel.sh (which checks the apt lists)
  --data FILE       data disk (virtio-blk, the guest's /dev/vda); created as a
                    64 MiB ext4 image on the host if missing, or as 64 MiB
                    of 0xFF (erased flash) with --append uroute.datafs=ubifs
                    or jffs2 (docs/flash.md)
  --qmp SOCKET      QMP server on a unix socket (-qmp unix:SOCKET,server=on,wait=off)
  --console FILE    serial console to FILE instead of stdio
  --append EXTRA    appended to the kernel command line
                    (default "console=ttyS0 quiet", ttyAMA0 on arm)
  --mem MB          guest RAM (default 512; 256 on malta)
  --timeout SECONDS kill QEMU after SECONDS (exit status 124)
  --dry-run         print the QEMU command line and exit

With uroute.datafs=ubifs or jffs2 on amd64, the defaults are the generic
amd64 kernel (FLAVOUR=amd64; cloud-amd64 has no MTD) in
$UROUTE_CACHE/kernel-amd64-generic, and an image with its modules.

UROUTE_CACHE defaults to ~/.cache/uroute. Missing QEMU / e2fsprogs are
installed with apt-get --no-install-recommends (the recommended EFI
firmware packages are ~400 MB and not needed for -kernel boots).
qemu-test/README.md describes the QMP hot-plug commands.
`

// ErrUsage is a command line run-qemu.sh does not take; ErrHelp is -h.
var (
	ErrUsage = errors.New("bad usage")
	ErrHelp  = errors.New("help requested")
)

// Options are run-qemu.sh's command line.
type Options struct {
	Machine        Machine
	Kernel, Initrd string
	Reuse          bool
	Data           string
	QMP            string
	Console        string
	Append         string
	Mem            int
	Timeout        time.Duration
	DryRun         bool
	Extra          []string // after "--"
}

// ParseOptions parses run-qemu.sh's arguments: ARCH [options] [-- EXTRA].
func ParseOptions(args []string) (Options, error) {
	var o Options
	if len(args) == 0 {
		return o, fmt.Errorf("%w: no ARCH", ErrUsage)
	}
	if args[0] == "-h" || args[0] == "--help" {
		return o, ErrHelp
	}
	m, err := MachineByName(args[0])
	if err != nil {
		return o, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	o.Machine = m
	args = args[1:]
	for len(args) > 0 {
		opt := args[0]
		args = args[1:]
		value := func() (string, error) {
			if len(args) == 0 {
				return "", fmt.Errorf("%w: %s needs a value", ErrUsage, opt)
			}
			v := args[0]
			args = args[1:]
			return v, nil
		}
		var v string
		switch opt {
		case "--reuse":
			o.Reuse = true
			continue
		case "--dry-run":
			o.DryRun = true
			continue
		case "--":
			o.Extra = append([]string(nil), args...)
			args = nil
			continue
		case "-h", "--help":
			return o, ErrHelp
		case "--kernel", "--initrd", "--data", "--qmp", "--console", "--append", "--mem", "--timeout":
			if v, err = value(); err != nil {
				return o, err
			}
		default:
			return o, fmt.Errorf("%w: unknown option %s", ErrUsage, opt)
		}
		switch opt {
		case "--kernel":
			o.Kernel = v
		case "--initrd":
			o.Initrd = v
		case "--data":
			o.Data = v
		case "--qmp":
			o.QMP = v
		case "--console":
			o.Console = v
		case "--append":
			o.Append = v
		case "--mem":
			if o.Mem, err = strconv.Atoi(v); err != nil || o.Mem <= 0 {
				return o, fmt.Errorf("%w: --mem %q: want megabytes", ErrUsage, v)
			}
		case "--timeout":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return o, fmt.Errorf("%w: --timeout %q: want seconds", ErrUsage, v)
			}
			o.Timeout = time.Duration(n) * time.Second
		}
	}
	return o, nil
}

// kernelMachine is the machine whose kernel the options boot: on amd64, a
// flash data file system needs the generic kernel (cloud-amd64 has no MTD).
func (o Options) kernelMachine() Machine {
	m := o.Machine
	if IsFlashFS(o.Append) && m.Name == "amd64" {
		m.Flavour, m.KernelCache = "amd64", "kernel-amd64-generic"
	}
	return m
}

// Spec is the guest the options describe (after Prepare has filled in the
// kernel and initrd).
func (o Options) Spec() Spec {
	devs := Standard(Kernel{Kernel: o.Kernel, Initrd: o.Initrd, Append: o.Append},
		Serial{File: o.Console}, o.Data, nil, o.QMP)
	if len(o.Extra) > 0 {
		devs = append(devs, Raw(o.Extra))
	}
	return Spec{Machine: o.Machine, Mem: o.Mem, Devices: devs}
}

// Prepare makes what the options name ready, logging to log: it fetches
// the kernel and builds the image unless given (or, with Reuse, cached;
// ctx ends a fetch or build),
// installs a missing QEMU, and creates a missing data disk. repo is the
// repository root (for its scripts). With DryRun it only resolves paths.
func (o *Options) Prepare(ctx context.Context, repo string, log io.Writer) error {
	km := o.kernelMachine()
	kdir := km.KernelDir()
	env := os.Environ()
	if km.Flavour != "" {
		env = append(env, "FLAVOUR="+km.Flavour)
	} else {
		env = append(env, "FLAVOUR="+os.Getenv("FLAVOUR"))
	}
	run := func(name string, args ...string) error {
		cmd := exec.CommandContext(ctx, filepath.Join(repo, "scripts", name), args...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = log, log
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("%s %v: %w", name, args, err)
		}
		return nil
	}
	start := time.Now()
	fetched := false
	fetch := func() error {
		if fetched {
			return nil
		}
		fetched = true
		return run("fetch-kernel.sh", km.Name, kdir)
	}
	if o.Kernel == "" {
		o.Kernel = filepath.Join(kdir, "vmlinuz")
		if !o.DryRun && (!o.Reuse || !exists(o.Kernel)) {
			if err := fetch(); err != nil {
				return err
			}
		}
	}
	derivedInitrd := o.Initrd == ""
	if o.Initrd == "" {
		if !exists(filepath.Join(kdir, "modules", "load-order")) {
			if o.DryRun {
				return fmt.Errorf("no kernel modules in %s yet (run once without --dry-run)", kdir)
			}
			if err := fetch(); err != nil {
				return err
			}
		}
		profile, err := BoardProfile(repo, o.Machine)
		if err != nil {
			return err
		}
		if o.DryRun {
			key, err := ImageKey(repo, km, profile, filepath.Join(kdir, "modules"))
			if err != nil {
				return err
			}
			o.Initrd = ImagePath(km, profile, key)
		} else {
			img, err := BuildImage(ctx, repo, km, profile, log)
			if err != nil {
				return err
			}
			o.Initrd = img.Path
			if !img.Built {
				fmt.Fprintf(log, "run-qemu: image %s: cached, inputs unchanged\n", img.Path)
			}
		}
	}
	for _, f := range []string{o.Kernel, o.Initrd} {
		// A dry run names the image it would build.
		if !exists(f) && !(o.DryRun && f == o.Initrd && derivedInitrd) {
			return fmt.Errorf("no such file %s", f)
		}
	}
	if d := time.Since(start); d >= time.Second {
		fmt.Fprintf(log, "run-qemu: kernel+image ready in %v\n", d.Round(time.Second))
	}
	if o.DryRun {
		return nil
	}
	if err := Need(repo, o.Machine.QEMU, o.Machine.Package, log); err != nil {
		return err
	}
	if o.Data != "" && !exists(o.Data) {
		if err := o.createData(repo, log); err != nil {
			return err
		}
	}
	if o.QMP != "" {
		_ = os.Remove(o.QMP)
	}
	return nil
}

// createData makes the missing data disk: 64 MiB of 0xFF (erased flash:
// UBI formats it at attach; it refuses a zero-filled disk, and JFFS2 will
// not mount one) for a flash file system, else a 64 MiB ext4 image.
func (o Options) createData(repo string, log io.Writer) error {
	const size = 64 << 20
	if IsFlashFS(o.Append) {
		if err := os.WriteFile(o.Data, bytes.Repeat([]byte{0xff}, size), 0o644); err != nil {
			return err
		}
		fmt.Fprintf(log, "run-qemu: created erased-flash data disk %s (64 MiB of 0xFF)\n", o.Data)
		return nil
	}
	if err := Need(repo, "mkfs.ext4", "e2fsprogs", log); err != nil {
		return err
	}
	if err := os.WriteFile(o.Data, nil, 0o644); err != nil {
		return err
	}
	if err := os.Truncate(o.Data, size); err != nil {
		return err
	}
	if b, err := exec.Command("mkfs.ext4", "-q", "-F", o.Data).CombinedOutput(); err != nil {
		os.Remove(o.Data)
		return fmt.Errorf("mkfs.ext4 %s: %v: %s", o.Data, err, b)
	}
	fmt.Fprintf(log, "run-qemu: created ext4 data disk %s (64 MiB)\n", o.Data)
	return nil
}

// Need installs Debian package pkg if command cmd is missing, through
// scripts/need.sh (apt-get --no-install-recommends).
func Need(repo, cmd, pkg string, log io.Writer) error {
	if _, err := exec.LookPath(cmd); err == nil {
		return nil
	}
	sh := exec.Command("bash", "-c", `. "$1"; need "$2" "$3"`, "run-qemu",
		filepath.Join(repo, "scripts", "need.sh"), cmd, pkg)
	sh.Stdout, sh.Stderr = log, log
	if err := sh.Run(); err != nil {
		return fmt.Errorf("installing %s (%s): %w", pkg, cmd, err)
	}
	return nil
}

func exists(f string) bool {
	_, err := os.Stat(f)
	return err == nil
}
