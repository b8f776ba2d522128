#!/usr/bin/env bash
# Boots uroute's image under QEMU (TCG; no KVM needed) the way a router
# boots: kernel + initramfs, two virtio NICs on a QEMU-internal hub (no host
# side, no user/tap networking), an optional ext4 data disk on virtio-blk,
# serial console on stdio.
#
#   scripts/run-qemu.sh ARCH [options] [-- EXTRA-QEMU-ARGS...]
#
#   ARCH: amd64 (q35, ttyS0) | arm64 (virt, cortex-a57, ttyAMA0)
#         armv7 (virt,highmem=off, cortex-a15, ttyAMA0) | mipsle (malta, ttyS0)
#
# Options:
#   --kernel FILE     kernel to boot (default: scripts/fetch-kernel.sh ARCH
#                     into $UROUTE_CACHE/kernel-ARCH)
#   --initrd FILE     initramfs (default: scripts/build-image.sh ARCH with
#                     MODULES_DIR=$UROUTE_CACHE/kernel-ARCH/modules, written
#                     to $UROUTE_CACHE/image-ARCH.cpio)
#   --reuse           use the cached kernel/image if present instead of
#                     fetching/building (the build takes ~40 s warm, 1.5 min cold)
#   --data FILE       data disk (virtio-blk, the guest's /dev/vda); created as a
#                     64 MiB ext4 image on the host if missing, or as 64 MiB
#                     of 0xFF (erased flash) with --append uroute.datafs=ubifs
#                     or jffs2 (docs/flash.md)
#   --qmp SOCKET      QMP server on a unix socket (-qmp unix:SOCKET,server=on,wait=off)
#   --console FILE    serial console to FILE instead of stdio
#   --append EXTRA    appended to the kernel command line
#                     (default "console=ttyS0 quiet", ttyAMA0 on arm)
#   --mem MB          guest RAM (default 512; 256 on malta)
#   --timeout SECONDS kill QEMU after SECONDS (exit status 124)
#   --dry-run         print the QEMU command line and exit
#
# With uroute.datafs=ubifs or jffs2 on amd64, the defaults are the generic
# amd64 kernel (FLAVOUR=amd64; cloud-amd64 has no MTD) in
# $UROUTE_CACHE/kernel-amd64-generic and its image image-amd64-generic.cpio.
#
# UROUTE_CACHE defaults to ~/.cache/uroute. Missing QEMU / e2fsprogs are
# installed with apt-get --no-install-recommends (the recommended EFI
# firmware packages are ~400 MB and not needed for -kernel boots).
# qemu-test/README.md describes the QMP hot-plug commands.
set -euo pipefail

usage() {
	sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2
	exit 2
}
[ $# -ge 1 ] || usage
arch=$1
shift

kernel='' initrd='' data='' qmp='' console='' append='' mem='' tmo='' reuse='' dry=''
extra=()
while [ $# -gt 0 ]; do
	case $1 in
	--kernel) kernel=$2; shift 2 ;;
	--initrd) initrd=$2; shift 2 ;;
	--data) data=$2; shift 2 ;;
	--qmp) qmp=$2; shift 2 ;;
	--console) console=$2; shift 2 ;;
	--append) append=$2; shift 2 ;;
	--mem) mem=$2; shift 2 ;;
	--timeout) tmo=$2; shift 2 ;;
	--reuse) reuse=1; shift ;;
	--dry-run) dry=1; shift ;;
	--) shift; extra=("$@"); break ;;
	-h|--help) usage ;;
	*) echo "run-qemu: unknown option $1" >&2; usage ;;
	esac
done

# Per machine: QEMU binary, Debian package, machine/CPU, console, whether
# the machine has PCIe (root port for hot-plug).
case $arch in
amd64)
	qemu=qemu-system-x86_64 pkg=qemu-system-x86
	machine=(-M q35) tty=ttyS0 pcie=1 defmem=512 ;;
arm64)
	qemu=qemu-system-aarch64 pkg=qemu-system-arm
	machine=(-M virt -cpu cortex-a57) tty=ttyAMA0 pcie=1 defmem=512 ;;
armv7)
	qemu=qemu-system-arm pkg=qemu-system-arm
	machine=(-M 'virt,highmem=off' -cpu cortex-a15) tty=ttyAMA0 pcie=1 defmem=512 ;;
mipsle)
	# Malta: plain PCI (GT-64120), no PCIe root ports, so no hot-plug.
	# The 32-bit 4kc-malta kernel maps 256 MiB of low memory; more needs
	# highmem handling we have not verified, so 256 is the default.
	qemu=qemu-system-mipsel pkg=qemu-system-mips
	machine=(-M malta) tty=ttyS0 pcie='' defmem=256 ;;
*) usage ;;
esac
mem=${mem:-$defmem}

repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}

# shellcheck source=scripts/need.sh
. "$(dirname "$0")/need.sh"

[ -n "$dry" ] || need "$qemu" "$pkg"
command -v timeout >/dev/null || { echo "run-qemu: timeout (coreutils) missing" >&2; exit 1; }

# Flash (UBIFS/JFFS2 on block2mtd) needs MTD modules: on amd64 only the
# generic kernel has them.
flash=''
case " $append " in
*" uroute.datafs=ubifs "* | *" uroute.datafs=jffs2 "*) flash=1 ;;
esac
kname=$arch flavour=${FLAVOUR:-}
if [ -n "$flash" ] && [ "$arch" = amd64 ]; then
	kname=amd64-generic flavour=amd64
fi
kdir=$cache/kernel-$kname
t0=$SECONDS
if [ -z "$kernel" ]; then
	kernel=$kdir/vmlinuz
	if [ -z "$reuse" ] || [ ! -f "$kernel" ]; then
		FLAVOUR=$flavour "$repo/scripts/fetch-kernel.sh" "$arch" "$kdir" >&2
	fi
fi
if [ -z "$initrd" ]; then
	initrd=$cache/image-$kname.cpio
	if [ -z "$reuse" ] || [ ! -f "$initrd" ]; then
		[ -f "$kdir/modules/load-order" ] || FLAVOUR=$flavour "$repo/scripts/fetch-kernel.sh" "$arch" "$kdir" >&2
		MODULES_DIR=$kdir/modules "$repo/scripts/build-image.sh" "$arch" "$initrd" >&2
	fi
fi
[ -f "$kernel" ] || { echo "run-qemu: no kernel $kernel" >&2; exit 1; }
[ -f "$initrd" ] || { echo "run-qemu: no initrd $initrd" >&2; exit 1; }
[ $((SECONDS - t0)) -eq 0 ] || echo "run-qemu: kernel+image ready in $((SECONDS - t0))s" >&2

cmdline="console=$tty quiet${append:+ $append}"

args=(
	"${machine[@]}" -accel tcg -m "$mem"
	-nodefaults -nographic -no-reboot
	-kernel "$kernel" -initrd "$initrd" -append "$cmdline"
)
if [ -n "$console" ]; then
	args+=(-serial "file:$console")
else
	args+=(-serial stdio)
fi

if [ -n "$data" ]; then
	if [ ! -e "$data" ] && [ -n "$flash" ]; then
		# Erased flash reads 0xFF; UBI formats it at attach. (It refuses
		# a zero-filled disk, and JFFS2 will not mount one.)
		head -c 64M /dev/zero | tr '\0' '\377' >"$data"
		echo "run-qemu: created erased-flash data disk $data (64 MiB of 0xFF)" >&2
	elif [ ! -e "$data" ]; then
		need mkfs.ext4 e2fsprogs
		truncate -s 64M "$data"
		mkfs.ext4 -q -F "$data"
		echo "run-qemu: created ext4 data disk $data (64 MiB)" >&2
	fi
	# First (only) virtio disk: /dev/vda in the guest, uinit's default.
	args+=(-drive "file=$data,if=none,id=data,format=raw"
		-device "virtio-blk-pci,drive=data")
fi

# Two virtio NICs, each on its own QEMU hub (hubid 0 and 1) with no other
# port: the links have carrier but nothing outside the VM is reachable.
# Never user/tap. Separate hubs, because one hub joining both NICs would
# wire two ports of the guest's bridges together, an L2 loop (the kernel
# logs "received packet on ... with own address"). romfile= skips iPXE.
for i in 0 1; do
	args+=(-netdev "hubport,id=n$i,hubid=$i"
		-device "virtio-net-pci,netdev=n$i,mac=52:54:00:12:34:0$((i + 1)),romfile=")
done
# An empty PCIe root port for QMP hot-plug (device_add ...,bus=rp1). Added
# whether or not --qmp is given, so the guest's hardware does not depend on it.
[ -z "$pcie" ] || args+=(-device "pcie-root-port,id=rp1,slot=1,chassis=1")

if [ -n "$qmp" ]; then
	rm -f "$qmp"
	args+=(-qmp "unix:$qmp,server=on,wait=off")
fi
args+=("${extra[@]}")

if [ -n "$dry" ]; then
	printf '%q ' "$qemu" "${args[@]}"
	echo
	exit 0
fi

echo "run-qemu: $qemu ${args[*]}" >&2
if [ -n "$tmo" ]; then
	# --foreground: QEMU keeps the terminal (stdio serial) instead of being
	# stopped by SIGTTIN in a background process group.
	rc=0
	timeout --foreground -k 5 "$tmo" "$qemu" "${args[@]}" || rc=$?
	[ "$rc" -ne 124 ] || echo "run-qemu: timed out after ${tmo}s" >&2
	exit "$rc"
fi
exec "$qemu" "${args[@]}"
