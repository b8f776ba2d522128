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
if [ ${#need[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
