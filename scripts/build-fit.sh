#!/usr/bin/env bash
# Builds the router image: a FIT (U-Boot's flattened image tree, made with
# mkimage from u-boot-tools) holding the kernel and the initramfs that
# scripts/build-image.sh made, each with a sha256 hash, and a description
# naming the board, the architecture and the version:
#
#   scripts/build-fit.sh ARCH CPIO OUT.itb     ARCH: arm64 | armv7 | mipsle
#
# Then scripts/sign-image.sh signs it for upgrades, and scripts/make-flash.sh
# lays it out on a router's flash (docs/upgrade.md).
#
# No DTB goes in: on QEMU's virt machines the device tree is the machine's
# own (QEMU builds it from the command line and hands it to U-Boot, which
# passes it on as $fdtcontroladdr), as on boards whose firmware owns the
# device tree. A board whose U-Boot does not have the kernel's DTB would
# add an fdt image to the configuration here.
#
# mipsle's FIT is for real MIPS routers, whose U-Boot loads a FIT or
# uImage from flash (the EdgeRouter X, MT7621: board/profiles/
# ubnt-edgerouter-x.toml; build with BOARD=ubnt-edgerouter-x). Its kernel
# goes in as a raw binary: Debian's 4kc-malta vmlinuz is a
# self-decompressing ELF, whose one loadable segment uroute-fw rawkernel
# extracts (the host's objcopy need not read MIPS ELF) with the load and
# entry addresses read from the ELF; no fdt (the kernel has its DTB built
# in). QEMU's malta still boots mipsle directly, not through this FIT:
# Debian's maltael U-Boot cannot boot unattended (no autoboot, no setexpr,
# no disk) -- docs/upgrade.md, "Machines". amd64 boots without U-Boot.
#
# Environment:
#   VERSION=STRING   the firmware version (default: git describe, or "dev")
#   BOARD=NAME       the hardware the image is for (default qemu-ARCH); an
#                    upgrade is refused unless it matches the running image's
#   KERNEL=FILE      default $UROUTE_CACHE/kernel-ARCH/vmlinuz (on arm64 it
#                    may be gzip'ed already: then it goes in as it is)
#   SOURCE_DATE_EPOCH  mkimage's timestamp (default: the last commit's time),
#                    so two builds of one tree give the same bytes
set -euo pipefail

usage() { echo "usage: $0 arm64|armv7|mipsle CPIO OUT.itb" >&2; exit 2; }
[ $# -eq 3 ] || usage
arch=$1 cpio=$2 out=$3
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
kernel=${KERNEL:-$cache/kernel-$arch/vmlinuz}
board=${BOARD:-qemu-$arch}
version=${VERSION:-$(git -C "$repo" describe --always --dirty 2>/dev/null || echo dev)}
: "${SOURCE_DATE_EPOCH:=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH

# Per architecture: U-Boot's arch name, how the kernel is stored, and
# where U-Boot puts it. The arm64 Image is 33 MB uncompressed: gzip it and
# let U-Boot inflate it to a 2 MiB-aligned address (arm64 boot protocol).
# The armv7 zImage decompresses itself: U-Boot copies it and jumps to it.
# 0x40400000 is 4 MiB into RAM on both virt machines, below the FIT that
# the boot script reads to 0x48000000. mipsle: raw, decompressing itself,
# at the load and entry addresses of its ELF (set below).
case $arch in
arm64) fitarch=arm64 comp=gzip load=0x40400000 ;;
armv7) fitarch=arm comp=none load=0x40400000 ;;
mipsle) fitarch=mips comp=none load=elf ;;
*) echo "$0: $arch boots without U-Boot (docs/upgrade.md)" >&2; exit 2 ;;
esac
# shellcheck disable=SC1003 # the pattern is a backslash, not an escaped quote
case $version in *'"'* | *'\'*) echo "$0: VERSION must not hold quotes or backslashes" >&2; exit 2 ;; esac
[ -f "$kernel" ] || { echo "$0: no kernel $kernel" >&2; exit 1; }
[ -f "$cpio" ] || { echo "$0: no initramfs $cpio" >&2; exit 1; }
command -v mkimage >/dev/null || { echo "$0: mkimage missing (apt-get install u-boot-tools)" >&2; exit 1; }
case $out in /*) ;; *) out=$PWD/$out ;; esac
case $kernel in /*) ;; *) kernel=$PWD/$kernel ;; esac # go run runs in $repo

tmp=$(mktemp -d "${TMPDIR:-/tmp}/uroute-fit.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
entry=$load
if [ "$load" = elf ]; then
	# One PT_LOAD segment's bytes, as objcopy -O binary would write them.
	addrs=$(cd "$repo" && CGO_ENABLED=0 go run ./firmware/cmd/uroute-fw rawkernel "$kernel" "$tmp/kernel") ||
		{ echo "$0: $kernel: cannot extract the raw kernel" >&2; exit 1; }
	read -r load entry <<<"$addrs"
elif [ "$comp" = gzip ] && [ "$(head -c 2 "$kernel" | od -An -tx1 | tr -d ' ')" = 1f8b ]; then
	cp "$kernel" "$tmp/kernel" # gzip'ed already (a test reusing one compression)
elif [ "$comp" = gzip ]; then
	gzip -9 -n -c "$kernel" >"$tmp/kernel"
else
	cp "$kernel" "$tmp/kernel"
fi
# The kernel unpacks a gzip initramfs itself; U-Boot passes it on as is.
case $cpio in
*.gz) cp "$cpio" "$tmp/initramfs" ;;
*) gzip -9 -n -c "$cpio" >"$tmp/initramfs" ;;
esac
kver=$(cat "$(dirname "$kernel")/kernel.version" 2>/dev/null || echo unknown)

cat >"$tmp/image.its" <<ITS
/dts-v1/;
/ {
	description = "uroute $version for $board ($arch)";
	#address-cells = <1>;
	uroute,board = "$board";
	uroute,arch = "$arch";
	uroute,version = "$version";
	images {
		kernel {
			description = "Linux $kver";
			data = /incbin/("kernel");
			type = "kernel";
			arch = "$fitarch";
			os = "linux";
			compression = "$comp";
			load = <$load>;
			entry = <$entry>;
			hash-1 { algo = "sha256"; };
		};
		ramdisk {
			description = "u-root initramfs with uroute";
			data = /incbin/("initramfs");
			type = "ramdisk";
			arch = "$fitarch";
			os = "linux";
			compression = "none";
			hash-1 { algo = "sha256"; };
		};
	};
	configurations {
		default = "uroute";
		uroute {
			description = "uroute $version";
			kernel = "kernel";
			ramdisk = "ramdisk";
		};
	};
};
ITS
mkimage -f "$tmp/image.its" "$tmp/image.itb" >"$tmp/mkimage.log" 2>&1 || { cat "$tmp/mkimage.log" >&2; exit 1; }
mv "$tmp/image.itb" "$out"
ls -l "$out" >&2
