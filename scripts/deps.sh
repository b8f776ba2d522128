#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine (root).
# Go, gcc and git are assumed; everything else comes from Debian's apt.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v modinfo >/dev/null || need+=(kmod) # scripts/fetch-kernel_test.sh checks the load order with it
# The QEMU suite boots all four machines; --no-install-recommends keeps
# out ~400 MB of EFI firmware that -kernel boots do not use.
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86)
command -v qemu-system-aarch64 >/dev/null || need+=(qemu-system-arm) # also qemu-system-arm
command -v qemu-system-mipsel >/dev/null || need+=(qemu-system-mips)
command -v qemu-mips-static >/dev/null || need+=(qemu-user-static) # big-endian MIPS unit tests
command -v mkfs.ext4 >/dev/null || need+=(e2fsprogs) # the guests' data disks
# scripts/buildroot-check.sh: Buildroot's check-package (Debian's python
# modules, for /usr/bin/python3), the tools Buildroot requires on the host,
# and its offline build's toolchain and host tools (docs/buildroot.md).
/usr/bin/python3 -c 'import magic' 2>/dev/null || need+=(python3-magic)
/usr/bin/python3 -m flake8 --version >/dev/null 2>&1 || need+=(python3-flake8)
command -v shellcheck >/dev/null || need+=(shellcheck)
for tool in rsync cpio bc unzip wget file patchelf; do
	command -v "$tool" >/dev/null || need+=("$tool")
done
command -v fakeroot-sysv >/dev/null || need+=(fakeroot)
command -v mipsel-linux-gnu-gcc >/dev/null || need+=(gcc-mipsel-linux-gnu)
[ -e /usr/mipsel-linux-gnu/lib/libc.a ] || need+=(libc6-dev-mipsel-cross)
# Router images and the U-Boot boot (docs/upgrade.md): mkimage and
# mkenvimage, dtc (mkimage -f compiles the .its with it), sfdisk for the
# flash layout, and Debian's U-Boot for QEMU's arm and arm64 virt.
command -v mkimage >/dev/null || need+=(u-boot-tools)
command -v dtc >/dev/null || need+=(device-tree-compiler)
command -v sfdisk >/dev/null || need+=(fdisk)
[ -f /usr/lib/u-boot/qemu_arm64/u-boot.bin ] || need+=(u-boot-qemu)
if [ ${#need[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
