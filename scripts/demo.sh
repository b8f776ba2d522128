#!/usr/bin/env bash
# The main job: builds uroute's amd64 router image and boots it under QEMU
# (TCG, no KVM needed) with two virtio NICs, a data disk and a QMP socket.
# In the guest, ifmgrd manages real links: the qemu-amd64 board profile puts
# every NIC in bridge "lan" and VLANs 10 and 20 on it, VLAN 10 in bridge
# "guest".
#
#   scripts/demo.sh [run-qemu.sh options, e.g. --reuse to skip the rebuild]
#
# stdin a terminal: the guest's console is yours (ifctl list, ifctl status,
#   ip -d link, ...). From another terminal, scripts/hotplug.sh add plugs a
#   third NIC into the running VM and scripts/hotplug.sh del unplugs it.
#   "uroute-uinit shutdown" in the guest powers off cleanly (ifmgrd stopped,
#   /data unmounted); Ctrl-C quits QEMU at once, a power cut.
# stdin not a terminal (CI, ./scripts/demo.sh </dev/null): unattended. It
#   waits for the guest's shell, runs ifctl list, ifctl status and ip -d link
#   in it, hot-plugs a third NIC with scripts/hotplug.sh add, shows its VLANs,
#   unplugs it with scripts/hotplug.sh del, shows the cleanup, and powers
#   the guest off with uroute-uinit shutdown. Exit status 0 if all of that
#   worked, else 1 with the console log on stderr (qemu-test/cmd/uroute-demo).
#
# Data disk: $UROUTE_CACHE/demo-data.img (UROUTE_CACHE default
# ~/.cache/uroute), a 64 MiB ext4 image made on first use and kept, so
# ifmgrd's unit allocations persist from one demo to the next; delete it to
# start afresh. QMP socket: $UROUTE_DEMO_QMP, default /tmp/uroute-demo.qmp.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
qmp=${UROUTE_DEMO_QMP:-/tmp/uroute-demo.qmp}
data=$cache/demo-data.img
mkdir -p "$cache/bin"
go build -o "$cache/bin/" ./qemu-test/cmd/qmpctl ./qemu-test/cmd/uroute-demo
# run-qemu.sh would take the socket path over from a running demo.
if [ -S "$qmp" ] && "$cache/bin/qmpctl" -s "$qmp" -t 3s query-status >/dev/null 2>&1; then
	echo "demo: a VM is already running with QMP on $qmp (set UROUTE_DEMO_QMP for a second one)" >&2
	exit 1
fi
if [ -t 0 ]; then
	echo "demo: QMP on $qmp; from another terminal: scripts/hotplug.sh add | del" >&2
	exec ./scripts/run-qemu.sh amd64 --data "$data" --qmp "$qmp" "$@"
fi
exec "$cache/bin/uroute-demo" -data "$data" -qmp "$qmp" -- "$@"
