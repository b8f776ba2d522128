#!/usr/bin/env bash
# ifmgrd on the host, no QEMU: managing real bridges in a throw-away network
# namespace, driven by ifctl the way an operator would, including a foreign
# interface squatting on a bridge name and a daemon restart that keeps every
# unit. Needs root; takes seconds. (scripts/demo.sh is the main job: the
# router image under QEMU.)
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
bin=$(mktemp -d)
ns=uroute-demo-$$
trap 'kill $pid 2>/dev/null || true; wait 2>/dev/null || true; ip netns del $ns 2>/dev/null || true; rm -rf "$bin"' EXIT
go build -o "$bin" ./firmware/cmd/ifmgrd ./firmware/cmd/ifctl
ip netns add $ns
ip -n $ns link set lo up
run() { echo "+ $*"; ip netns exec $ns "$@" || echo "  (exit $?)"; }
cat > "$bin/board.toml" <<'TOML'
# Demo board: veth pairs named lan* stand in for hot-plugged NICs.
board = "demo"
[[port]]
name = "lan"
match.name = "lan*"
bridge = "lan"
[[bridge]]
name = "lan"
keep_empty = true
TOML
start() {
	ip netns exec $ns "$bin/ifmgrd" --config "$bin/board.toml" --db "$bin/data/ifmgr.db" --socket "$bin/ifmgr.sock" &
	pid=$!
	for _ in $(seq 100); do [ -S "$bin/ifmgr.sock" ] && break; sleep 0.05; done
}
ifctl() { run "$bin/ifctl" --socket "$bin/ifmgr.sock" "$@"; }

start
echo "# the board profile made the lan bridge; now plug two 'NICs'"
run ip link add lan1 type veth peer name peer1
run ip link add lan2 type veth peer name peer2
sleep 0.3
run ip -br link show master bridge0
ifctl create bridge
ifctl create bridge
ifctl create bridge7
ifctl create bridge123456
echo "# another process takes the name the allocator would hand out next"
run ip link add bridge3 type veth peer name squat
ifctl create bridge
ifctl create bridge3
ifctl destroy bridge3
echo "# the squatter goes: its unit comes back, not leaked"
run ip link delete bridge3
ifctl create bridge
echo "# this host kernel has no 8021q: the VLAN is refused with the kernel's reason (the QEMU image has it)"
run ip link add eth0 type veth peer name eth0p
ifctl create vlan --dev eth0 --vid 10
ifctl list
ifctl status
echo "# unplug lan2, then edit nothing and reload: nothing to do"
run ip link delete lan2
ifctl reload --dry-run
echo "+ restart ifmgrd"
kill -TERM $pid; wait $pid || true
start
ifctl list -j
ifctl status
run ip -br link show group "$(printf %d 0x75520000)"
