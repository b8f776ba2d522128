#!/usr/bin/env bash
# Installs what the tests and the demo need on a fresh Debian machine (root).
# Go, gcc and git are assumed; everything else comes from Debian's apt.
set -euo pipefail
need=()
command -v ip >/dev/null || need+=(iproute2)
command -v modinfo >/dev/null || need+=(kmod) # scripts/fetch-kernel.sh reads .ko depends
command -v qemu-system-x86_64 >/dev/null || need+=(qemu-system-x86) # qemu-test/qmp runs against a real QEMU
if [ ${#need[@]} -gt 0 ]; then
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
