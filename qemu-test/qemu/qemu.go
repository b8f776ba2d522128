// Package qemu is the one place that knows uroute's QEMU machines and builds
// their command lines: a machine table (Machines) and typed devices (kernel
// and initramfs, firmware, NICs on hubs, disks, flash, QMP, console) from
// which Spec.Args makes the arguments, in the spirit of u-root's vmtest.
// The QEMU test harness (qemu-test), the unattended demo
// (qemu-test/cmd/uroute-demo) and scripts/run-qemu.sh (a thin wrapper over
// qemu-test/cmd/uroute-qemu) all boot through it.
//
// Every guest runs under TCG with -nodefaults (no device we did not ask
// for), -nographic and, unless Spec.Reboot, -no-reboot, so that a guest's
// reboot or power-off ends QEMU. A new kind of boot (U-Boot from -bios or
// pflash, a second disk) is one more Device, not another command line.
package qemu

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Machine is one QEMU machine the image is built and booted for.
type Machine struct {
	Name    string   // amd64, arm64, armv7, mipsle: build-image.sh's ARCH
	QEMU    string   // the system emulator
	Package string   // Debian package that has QEMU
	Machine []string // -M (and -cpu)
	TTY     string   // the serial console's device in the guest
	// PCIe: the machine has PCI Express, so an empty pcie-root-port (rp1)
	// is added for hot-plug. Hotplug: the guest kernel has pciehp, so a
	// NIC device_add'ed into rp1 appears by itself (not in Debian's armmp:
	// CONFIG_HOTPLUG_PCI is off; malta's PCI has no hot-plug at all).
	PCIe, Hotplug bool
	Mem           int // MB
	// Slow scales the console timeouts: TCG emulates some machines far
	// more slowly than others on the same host.
	Slow float64
	// Flavour is the Debian kernel flavour (fetch-kernel.sh's FLAVOUR),
	// "" for the arch's default; KernelCache is then the name of the
	// directory under CacheDir it is fetched into (default kernel-ARCH).
	Flavour, KernelCache string
}

// Machines are the image's machines, in the order the QEMU suite runs them.
var Machines = []Machine{
	{Name: "amd64", QEMU: "qemu-system-x86_64", Package: "qemu-system-x86",
		Machine: []string{"-M", "q35"}, TTY: "ttyS0", PCIe: true, Hotplug: true, Mem: 512, Slow: 1},
	{Name: "arm64", QEMU: "qemu-system-aarch64", Package: "qemu-system-arm",
		Machine: []string{"-M", "virt", "-cpu", "cortex-a57"}, TTY: "ttyAMA0", PCIe: true, Hotplug: true, Mem: 512, Slow: 2},
	{Name: "armv7", QEMU: "qemu-system-arm", Package: "qemu-system-arm",
		Machine: []string{"-M", "virt,highmem=off", "-cpu", "cortex-a15"}, TTY: "ttyAMA0", PCIe: true, Mem: 512, Slow: 2},
	// Malta: plain PCI (GT-64120), no PCIe root ports, so no hot-plug.
	// The 32-bit 4kc-malta kernel maps 256 MiB of low memory; more needs
	// highmem handling we have not verified.
	{Name: "mipsle", QEMU: "qemu-system-mipsel", Package: "qemu-system-mips",
		Machine: []string{"-M", "malta"}, TTY: "ttyS0", Mem: 256, Slow: 2},
}

// MachineByName is the entry of Machines named name.
func MachineByName(name string) (Machine, error) {
	var names []string
	for _, m := range Machines {
		if m.Name == name {
			return m, nil
		}
		names = append(names, m.Name)
	}
	return Machine{}, fmt.Errorf("qemu: no machine %q (have %s)", name, strings.Join(names, ", "))
}

// CacheDir is $UROUTE_CACHE or ~/.cache/uroute: kernels, images, tools.
func CacheDir() string {
	if d := os.Getenv("UROUTE_CACHE"); d != "" {
		return d
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".cache", "uroute")
}

// KernelDir is where scripts/fetch-kernel.sh puts the machine's kernel.
func (m Machine) KernelDir() string {
	if m.KernelCache != "" {
		return filepath.Join(CacheDir(), m.KernelCache)
	}
	return filepath.Join(CacheDir(), "kernel-"+m.Name)
}

// Scale is d stretched by the machine's slowness.
func (m Machine) Scale(d time.Duration) time.Duration {
	if m.Slow <= 1 {
		return d
	}
	return time.Duration(float64(d) * m.Slow)
}

// Spec is one guest: a machine, its RAM and its devices, in order (QEMU
// numbers disks, NICs and pflash units in the order they are given).
type Spec struct {
	Machine Machine
	Mem     int // MB; 0 is Machine.Mem
	// Reboot lets a guest's reboot restart it inside QEMU (a boot
	// loader's A/B fallback); by default a reboot ends QEMU (-no-reboot).
	Reboot  bool
	Devices []Device
}

// Device is one part of a guest's command line.
type Device interface {
	// AddArgs adds the device's arguments to the command line.
	AddArgs(c *CommandLine)
}

// CommandLine collects QEMU's arguments while devices add theirs.
type CommandLine struct {
	Machine Machine
	args    []string
	next    map[string]int
}

// Add appends arguments.
func (c *CommandLine) Add(args ...string) { c.args = append(c.args, args...) }

// ID is a fresh QEMU id with the given prefix: prefix0, prefix1, ...
func (c *CommandLine) ID(prefix string) string {
	n := c.next[prefix]
	c.next[prefix] = n + 1
	return prefix + strconv.Itoa(n)
}

// Args is QEMU's command line, without the binary.
func (s Spec) Args() []string {
	mem := s.Mem
	if mem == 0 {
		mem = s.Machine.Mem
	}
	c := &CommandLine{Machine: s.Machine, next: map[string]int{}}
	c.Add(s.Machine.Machine...)
	c.Add("-accel", "tcg", "-m", strconv.Itoa(mem), "-nodefaults", "-nographic")
	if !s.Reboot {
		c.Add("-no-reboot")
	}
	for _, d := range s.Devices {
		d.AddArgs(c)
	}
	return c.args
}

// Command is the QEMU process for s (not started), ended with ctx. QEMU
// is also killed when the process that started it dies (a test binary
// killed by its -timeout, a demo interrupted): a guest left running would
// take CPU from every later guest on the machine.
func (s Spec) Command(ctx context.Context) *exec.Cmd {
	cmd := exec.CommandContext(ctx, s.Machine.QEMU, s.Args()...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd
}

// String is the command line as a shell would take it.
func (s Spec) String() string {
	return ShellQuote(append([]string{s.Machine.QEMU}, s.Args()...))
}

// ShellQuote joins args into one line that sh splits back into them.
func ShellQuote(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=+.,:/@%") == "" {
			q[i] = a
			continue
		}
		q[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(q, " ")
}
