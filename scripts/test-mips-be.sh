#!/usr/bin/env bash
# Runs the unit tests of ifmgr/... and persist/ for big-endian 32-bit MIPS
# (ath79-class routers: GOARCH=mips GOMIPS=softfloat) under qemu-user, on any
# Linux host (no MIPS kernel needed: Debian ships none for big-endian MIPS).
#
#   scripts/test-mips-be.sh [GO-TEST-FLAGS...]     e.g. -v, -run TestX
#
# Installs qemu-user-static with apt-get --no-install-recommends if
# qemu-mips-static is missing. Sets UROUTE_QEMU_USER (internal/qemuuser) to
# the emulator: go test -exec passes the environment to the test binaries,
# whose real-kernel tests (netlink, network namespaces) then skip with that
# reason, and whose child processes run through the emulator too. Exits
# non-zero if any test fails; the last line is a one-line summary.
set -euo pipefail
cd "$(dirname "$0")/.."

# shellcheck source=scripts/need.sh
. scripts/need.sh
need qemu-mips-static qemu-user-static
emu=$(command -v qemu-mips-static)

pkgs=(./ifmgr/... ./persist/)
log=$(mktemp)
trap 'rm -f "$log"' EXIT
t0=$SECONDS
rc=0
# No -short: persist's corrupt-file probes run in full. 20m: qemu-user is
# slow, though the whole run takes 20-45 s warm on a 2-core host.
GOARCH=mips GOMIPS=softfloat UROUTE_QEMU_USER=$emu \
	go test -count=1 -timeout 20m -exec "$emu" "$@" "${pkgs[@]}" 2>&1 | tee "$log" || rc=$?
ok=$(grep -c -E '^ok\s' "$log" || true)
failed=$(awk '$1 == "FAIL" && $2 ~ /\// { printf " %s", $2 }' "$log")
if [ "$rc" -eq 0 ]; then
	echo "test-mips-be: ok: $ok packages passed (GOARCH=mips GOMIPS=softfloat under $emu) in $((SECONDS - t0))s"
else
	echo "test-mips-be: FAIL (exit $rc): $ok packages passed, failed:${failed:- see above} (GOARCH=mips GOMIPS=softfloat under $emu) in $((SECONDS - t0))s"
fi
exit "$rc"
