#!/usr/bin/env bash
# Boots uroute's image under QEMU (TCG; no KVM needed) the way a router
# boots: kernel + initramfs, two virtio NICs on QEMU-internal hubs (no host
# side, no user/tap networking), an optional data disk on virtio-blk,
# serial console on stdio.
#
#   scripts/run-qemu.sh ARCH [options] [-- EXTRA-QEMU-ARGS...]
#
# A thin wrapper: qemu-test/cmd/uroute-qemu (built into $UROUTE_CACHE/bin)
# does the work, with the command line from qemu-test/qemu, the one place
# that builds it for the tests, the demo and this script.
# "scripts/run-qemu.sh --help" lists the options (--kernel, --initrd,
# --reuse, --data, --qmp, --console, --append, --mem, --timeout, --dry-run).
#
# UROUTE_CACHE defaults to ~/.cache/uroute.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
mkdir -p "$cache/bin"
(cd "$repo" && go build -o "$cache/bin/uroute-qemu" ./qemu-test/cmd/uroute-qemu)
UROUTE_REPO=$repo exec "$cache/bin/uroute-qemu" "$@"
