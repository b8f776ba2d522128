#!/usr/bin/env bash
# Runs every test: formatting, vet, staticcheck, the Go tests, the
# big-endian MIPS tests and the QEMU suite. As root, the real-kernel tests
# run inside throw-away network namespaces. At the end (pass or fail) it
# prints how long each stage took, each QEMU test on its own line.
#
# Images are cached by content ($UROUTE_CACHE/images, default
# ~/.cache/uroute/images; see qemu-test/qemu BuildImage): a rerun with no
# change to the image's sources, profile or modules builds none. Kernels
# are cached in $UROUTE_CACHE/kernel-* (scripts/fetch-kernel.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
export UROUTE_CACHE=$cache
log=$(mktemp -d "${TMPDIR:-/tmp}/uroute-test.XXXXXX")

# stage NAME CMD...: runs CMD as one timed stage of the table. CMD runs in
# a "||" context, where bash ignores set -e: the functions below chain their
# steps with && so that a failure is never masked.
names=() secs=() results=()
stage() {
	local name=$1 t0=$SECONDS rc=0
	shift
	echo "== $name"
	"$@" || rc=$?
	names+=("$name") secs+=($((SECONDS - t0)))
	if [ "$rc" -eq 0 ]; then results+=(ok); else results+=("FAILED ($rc)"); fi
	return "$rc"
}

# table prints the stages, and the QEMU tests' own times from go test -v.
table() {
	local i total=0
	echo
	echo "== time per stage"
	for i in "${!names[@]}"; do
		printf '%-58s %6ss  %s\n' "${names[$i]}" "${secs[$i]}" "${results[$i]}"
		total=$((total + secs[i]))
	done
	if [ -f "$log/qemu.log" ]; then
		# Top-level tests and their per-arch subtests (4 spaces in).
		sed -nE 's/^(    )?--- (PASS|FAIL|SKIP): (Test[A-Za-z0-9_]+(\/[A-Za-z0-9_-]+)?) \(([0-9.]+)s\)$/\3 \5 \2/p' "$log/qemu.log" |
			while read -r t s r; do
				case $t in */*) t="  $t" ;; esac
				printf '  %-56s %6.0fs  %s\n' "$t" "$s" "$r"
			done
	fi
	printf '%-58s %6ss\n' "total" "$total"
	if [ -f "$log/qemu.log" ]; then
		echo
		echo "== where the QEMU boots spent their time (scripts/boot-times.sh)"
		./scripts/boot-times.sh "$log/qemu.log" || true
	fi
}
trap table EXIT

gofmt_check() {
	local bad
	bad=$(gofmt -l $(git ls-files '*.go') 2>&1 || true)
	[ -z "$bad" ] || { echo "gofmt would change: $bad"; return 1; }
}
vet() {
	# Also for the big-endian 32-bit MIPS routers ifmgr must run on.
	go vet ./... && GOARCH=mips GOMIPS=softfloat go vet ./...
}
fetch_kernels() {
	local arch
	for arch in amd64 arm64 armv7 mipsle; do
		./scripts/fetch-kernel.sh "$arch" "$cache/kernel-$arch" || return
	done
	# The flash test (UBIFS on block2mtd) needs MTD, which cloud-amd64 lacks.
	FLAVOUR=amd64 ./scripts/fetch-kernel.sh amd64 "$cache/kernel-amd64-generic" || return
	# The crash test (TestCrash) needs device-mapper's log-writes target,
	# which a router's image does not carry.
	EXTRA_MODULES="dm_mod dm_log_writes" ./scripts/fetch-kernel.sh amd64 "$cache/kernel-amd64-dmlog"
}
# reproducible: a fresh build of the mipsle router image (the lifecycle
# test boots it with uroute-probe added, qemu.Variant.WithTestTools) must
# have the bytes of the cached one. Checked once per set of inputs: a stamp
# names the image.
reproducible() {
	local img fresh=$log/fresh.cpio
	go build -o "$cache/bin/uroute-image" ./qemu-test/cmd/uroute-image &&
		img=$("$cache/bin/uroute-image" mipsle qemu-test/profiles/qemu-vlan-hub.toml) || return
	if [ -f "$img.reproducible" ]; then
		echo "$img: already checked for these inputs"
		return 0
	fi
	BOARD_FILE=qemu-test/profiles/qemu-vlan-hub.toml MODULES_DIR=$cache/kernel-mipsle/modules \
		./scripts/build-image.sh mipsle "$fresh" 2>/dev/null &&
		cmp "$img" "$fresh" &&
		sha256sum "$fresh" | cut -d' ' -f1 | tee "$img.reproducible" &&
		rm -f "$fresh"
}
# fit_reproducible: the arm64 router image (FIT) built twice from the same
# initramfs and kernel has the same bytes (mkimage stamps
# SOURCE_DATE_EPOCH, the last commit's time).
fit_reproducible() {
	local img
	img=$("$cache/bin/uroute-image" arm64 qemu-test/profiles/qemu-vlan-hub.toml) &&
		./scripts/build-fit.sh arm64 "$img" "$log/1.itb" &&
		./scripts/build-fit.sh arm64 "$img" "$log/2.itb" &&
		cmp "$log/1.itb" "$log/2.itb" &&
		sha256sum "$log/1.itb" | cut -d' ' -f1
}
qemu_suite() {
	# -v: the boot phases and convergence times of a passing run are
	# worth reading; a failing guest's whole console is printed with its
	# test.
	UROUTE_QEMU=1 go test -count=1 -v -timeout 75m ./qemu-test/ 2>&1 | tee "$log/qemu.log"
	return "${PIPESTATUS[0]}"
}

stage "deps (scripts/deps.sh)" ./scripts/deps.sh
stage "gofmt" gofmt_check
stage "go vet (amd64, big-endian mips)" vet
stage "staticcheck" go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
stage "go test (unit and host-kernel tests)" go test -count=1 -p 1 -timeout 30m "$@" ./...
stage "fuzz: every target for 5 s (scripts/fuzz.sh)" ./scripts/fuzz.sh
stage "big-endian MIPS: ifmgr/... and persist under qemu-user" ./scripts/test-mips-be.sh
stage "kernels (fetch-kernel.sh, 5 kernels)" fetch_kernels
stage "the image is reproducible (mipsle, two builds)" reproducible
stage "the FIT is reproducible (arm64, two builds)" fit_reproducible
# The router's initramfs fits 8 MB of flash next to a 2.5 MB kernel:
# mipsle's, without the Debian kernel's modules (a router's kernel has those
# drivers built in), at most 3 MB xz'd. The image is cached by content.
stage "the initramfs fits 8 MB of flash (mipsle, <= 3 MB xz, scripts/image-sizes.sh)" \
	./scripts/image-sizes.sh -max-xz 3000000 mipsle
stage "Buildroot: check-package, defconfigs, offline malta build" ./scripts/buildroot-check.sh
stage "QEMU suite (amd64, arm64, armv7, mipsle)" qemu_suite
