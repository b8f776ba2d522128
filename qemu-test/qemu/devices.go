package qemu

import (
	"fmt"
	"strings"
)

// Kernel boots Linux directly (-kernel, -initrd, -append), as the image's
// tests and the demo do. The command line starts with the machine's
// console and "quiet"; Append follows.
type Kernel struct {
	Kernel, Initrd string
	Append         string
}

// AddArgs implements Device.
func (k Kernel) AddArgs(c *CommandLine) {
	cmdline := "console=" + c.Machine.TTY + " quiet"
	if k.Append != "" {
		cmdline += " " + k.Append
	}
	c.Add("-kernel", k.Kernel)
	if k.Initrd != "" {
		c.Add("-initrd", k.Initrd)
	}
	c.Add("-append", cmdline)
}

// BIOS is firmware loaded by -bios, for example Debian's U-Boot for
// qemu_arm (u-boot-qemu's u-boot.bin), which then boots from the disks.
type BIOS struct{ File string }

// AddArgs implements Device.
func (b BIOS) AddArgs(c *CommandLine) { c.Add("-bios", b.File) }

// PFlash is a parallel NOR flash chip (-drive if=pflash): malta's 4 MiB
// boot flash, or the virt machine's two 64 MiB banks (unit 0 holds the
// firmware the CPU starts in, unit 1 is free for an environment). Units
// are QEMU's, in the order of the machine's flash banks.
type PFlash struct {
	File     string
	Unit     int
	ReadOnly bool
}

// AddArgs implements Device.
func (p PFlash) AddArgs(c *CommandLine) {
	opts := fmt.Sprintf("if=pflash,format=raw,unit=%d,file=%s", p.Unit, p.File)
	if p.ReadOnly {
		opts += ",readonly=on"
	}
	c.Add("-drive", opts)
}

// Disk is a raw disk image on virtio-blk (by default): in the guest the
// first is /dev/vda, the second /dev/vdb, in command-line order.
type Disk struct {
	File string
	// ID is QEMU's drive id (for QMP); default disk0, disk1, ...
	ID string
	// Model is the QEMU device (default virtio-blk-pci; virtio-blk-device
	// for virtio-mmio).
	Model string
	// Serial, if set, is the disk's serial (/dev/disk/by-id).
	Serial   string
	ReadOnly bool
}

// AddArgs implements Device.
func (d Disk) AddArgs(c *CommandLine) {
	id := d.ID
	if id == "" {
		id = c.ID("disk")
	}
	model := d.Model
	if model == "" {
		model = "virtio-blk-pci"
	}
	drive := "file=" + d.File + ",if=none,id=" + id + ",format=raw"
	if d.ReadOnly {
		drive += ",readonly=on"
	}
	dev := model + ",drive=" + id
	if d.Serial != "" {
		dev += ",serial=" + d.Serial
	}
	c.Add("-drive", drive, "-device", dev)
}

// NIC is a virtio-net NIC on a QEMU hub: hubport only, never user or tap
// networking, so nothing outside the VM is reachable. NICs on one hub see
// each other's frames; a NIC alone on its hub has carrier and no peer.
// romfile= skips the iPXE option ROM.
type NIC struct {
	Hub int
	MAC string
}

// AddArgs implements Device. Netdevs are n0, n1, ... in order.
func (n NIC) AddArgs(c *CommandLine) {
	id := c.ID("n")
	c.Add("-netdev", fmt.Sprintf("hubport,id=%s,hubid=%d", id, n.Hub),
		"-device", fmt.Sprintf("virtio-net-pci,netdev=%s,mac=%s,romfile=", id, n.MAC))
}

// DefaultNICs are run-qemu.sh's: 52:54:00:12:34:01 and :02, each on its
// own hub. (One hub joining both would wire two ports of the guest's
// bridges together, an L2 loop.)
var DefaultNICs = []NIC{{0, "52:54:00:12:34:01"}, {1, "52:54:00:12:34:02"}}

// HotplugPort is the id of the empty PCIe root port (see RootPort).
const HotplugPort = "rp1"

// RootPort is an empty pcie-root-port for QMP hot-plug (device_add
// ...,bus=rp1). Added whenever the machine has PCIe, with or without QMP,
// so the guest's hardware does not depend on it.
type RootPort struct{}

// AddArgs implements Device; nothing on a machine without PCIe.
func (RootPort) AddArgs(c *CommandLine) {
	if c.Machine.PCIe {
		c.Add("-device", "pcie-root-port,id="+HotplugPort+",slot=1,chassis=1")
	}
}

// QMP is a QMP server on a unix socket that does not wait for a client.
type QMP struct{ Socket string }

// AddArgs implements Device.
func (q QMP) AddArgs(c *CommandLine) { c.Add("-qmp", "unix:"+q.Socket+",server=on,wait=off") }

// Serial is the guest's serial console: QEMU's stdio, or File if set.
type Serial struct{ File string }

// AddArgs implements Device.
func (s Serial) AddArgs(c *CommandLine) {
	if s.File != "" {
		c.Add("-serial", "file:"+s.File)
		return
	}
	c.Add("-serial", "stdio")
}

// Raw is arguments given as they are (run-qemu.sh's "-- EXTRA-ARGS").
type Raw []string

// AddArgs implements Device.
func (r Raw) AddArgs(c *CommandLine) { c.Add(r...) }

// Standard is the usual guest: a direct kernel boot, the console, the data
// disk (none if data is ""), the NICs (DefaultNICs if nil), the hot-plug
// root port and QMP (none if qmp is ""), in run-qemu.sh's order.
func Standard(k Kernel, console Serial, data string, nics []NIC, qmp string) []Device {
	devs := []Device{k, console}
	if data != "" {
		devs = append(devs, Disk{File: data, ID: "data"})
	}
	if nics == nil {
		nics = DefaultNICs
	}
	for _, n := range nics {
		devs = append(devs, n)
	}
	devs = append(devs, RootPort{})
	if qmp != "" {
		devs = append(devs, QMP{Socket: qmp})
	}
	return devs
}

// IsFlashFS reports whether a kernel command line puts /data on emulated
// flash (uroute.datafs=ubifs or jffs2, docs/flash.md), which needs MTD
// modules and an erased (0xFF) data disk.
func IsFlashFS(cmdline string) bool {
	for _, f := range strings.Fields(cmdline) {
		if f == "uroute.datafs=ubifs" || f == "uroute.datafs=jffs2" {
			return true
		}
	}
	return false
}
