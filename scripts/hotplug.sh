#!/usr/bin/env bash
# Hot-plugs a virtio NIC into the running VM of scripts/demo.sh (or of
# scripts/run-qemu.sh --qmp SOCK), or unplugs it again:
#
#   scripts/hotplug.sh add [ID [MAC]]   default ID nic2, MAC 52:54:00:12:34:03
#   scripts/hotplug.sh del [ID]
#
# add: netdev_add (hubport on its own QEMU hub, 2, with nothing else on it)
# and device_add virtio-net-pci into the empty PCIe root port rp1; the guest
# sees a new ethN and ifmgrd puts the profile's VLANs on it.
# del: device_del, waits for QEMU's DEVICE_DELETED of ID (the guest has
# released the device), then netdev_del. The kernel deletes the VLANs with
# their parent; ifmgrd keeps their units reserved for the NIC's return.
# rp1 has one slot: one hot-plugged NIC at a time.
#
# UROUTE_DEMO_QMP: the QMP socket (default /tmp/uroute-demo.qmp, the
# demo's). QEMU serves one QMP client at a time. Other QMP commands:
# qemu-test/cmd/qmpctl (built here into $UROUTE_CACHE/bin/qmpctl).
set -euo pipefail
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
case $1 in
add) [ $# -le 3 ] || usage ;;
del) [ $# -le 2 ] || usage ;;
*) usage ;;
esac
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
mkdir -p "$cache/bin"
(cd "$repo" && go build -o "$cache/bin/qmpctl" ./qemu-test/cmd/qmpctl)
exec "$cache/bin/qmpctl" -s "${UROUTE_DEMO_QMP:-/tmp/uroute-demo.qmp}" nic "$@"
