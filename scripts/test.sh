#!/usr/bin/env bash
# Runs every test: formatting, vet, staticcheck, the Go tests, the short
# soak, fuzzing, the big-endian MIPS tests, the Buildroot checks and the
# QEMU suite. As root, the real-kernel tests run inside throw-away network
# namespaces. At the end (pass or fail) it prints how long each stage took,
# each QEMU test on its own line, and the wall-clock total.
#
# Images are cached by content ($UROUTE_CACHE/images, default
# ~/.cache/uroute/images; see qemu-test/qemu BuildImage): a rerun with no
# change to the image's sources, profile or modules builds none. Kernels
# are cached in $UROUTE_CACHE/kernel-* (scripts/fetch-kernel.sh).
#
# Lanes. After a short serial prelude (deps, gofmt, vet, staticcheck,
# kernels) three lanes run at once: a TCG guest keeps one core busy, and
# the host's work (unit tests, the soak, fuzzing, qemu-user, image builds)
# fits beside it on a 2-core machine:
#   qemu-a  the two longest multi-arch QEMU tests ($qemu_a below);
#   qemu-b  every other QEMU test, including any test added later;
#   host    everything that boots no guest, one stage after another (the
#           unit tests first and alone on the host kernel: a bridge
#           teardown holds rtnl_lock, so the soak waits for them).
# The guests' waits are generous for this (qemu-test/README.md, "Knobs").
# Each lane runs all its stages even after a failure, and the run fails if
# any stage did. Each QEMU lane's go test -v output is printed whole when
# the lanes are done (interleaved it could not be read).
set -euo pipefail
cd "$(dirname "$0")/.."
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
export UROUTE_CACHE=$cache
log=$(mktemp -d "${TMPDIR:-/tmp}/uroute-test.XXXXXX")
start=$SECONDS

# The QEMU tests of lane qemu-a, as a go test -run pattern; lane qemu-b
# runs the rest (-skip). Balance the lanes by the table's figures.
qemu_a='^(TestLifecycle|TestUpgrade)$'

# stage LANE NAME CMD...: runs CMD as one timed stage of the table (one
# line in $log/stages, which the lanes' subshells share). CMD runs in a
# "||" context, where bash ignores set -e: the functions below chain their
# steps with && so that a failure is never masked.
stage() {
	local lane=$1 name=$2 t=$SECONDS rc=0 result=ok
	shift 2
	echo "== [$lane] $name"
	"$@" || rc=$?
	[ "$rc" -eq 0 ] || result="FAILED ($rc)"
	printf '%s\t%s\t%s\t%s\n' "$lane" "$name" "$((SECONDS - t))" "$result" >>"$log/stages"
	echo "== [$lane] $name: $result in $((SECONDS - t))s"
	return "$rc"
}

# table prints the stages by lane, each QEMU lane's tests with their own
# times from go test -v, and the wall-clock time of the whole run.
table() {
	local l lane name s result
	echo
	echo "== time per stage (the lanes run at once; the run took the wall clock)"
	for l in serial host qemu-a qemu-b; do
		[ -f "$log/stages" ] || break
		while IFS=$'\t' read -r lane name s result; do
			[ "$lane" = "$l" ] || continue
			printf '%-7s %-60s %6ss  %s\n' "$lane" "$name" "$s" "$result"
			case $name in QEMU*) qemu_tests "$lane" ;; esac
		done <"$log/stages"
	done
	printf '%-68s %6ss\n' "wall clock" "$((SECONDS - start))"
	if compgen -G "$log/qemu-*.log" >/dev/null; then
		echo
		echo "== where the QEMU boots spent their time (scripts/boot-times.sh)"
		cat "$log"/qemu-*.log >"$log/qemu.log"
		./scripts/boot-times.sh "$log/qemu.log" || true
	fi
	echo "logs: $log"
}
# qemu_tests LANE: the lane's top-level tests and their per-arch subtests
# (4 spaces in).
qemu_tests() {
	[ -f "$log/$1.log" ] || return 0
	sed -nE 's/^(    )?--- (PASS|FAIL|SKIP): (Test[A-Za-z0-9_]+(\/[A-Za-z0-9_-]+)?) \(([0-9.]+)s\)$/\3 \5 \2/p' "$log/$1.log" |
		while read -r t s r; do
			case $t in */*) t="  $t" ;; esac
			printf '%-7s   %-58s %6.0fs  %s\n' "" "$t" "$s" "$r"
		done
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
# image ARCH: the cached router image of ARCH (built if missing; the QEMU
# tests boot it with uroute-probe added, qemu.Variant.WithTestTools),
# through qemu-test/cmd/uroute-image, the QEMU tests' own builder.
image() {
	go build -o "$log/bin/uroute-image" ./qemu-test/cmd/uroute-image &&
		"$log/bin/uroute-image" "$1" qemu-test/profiles/qemu-vlan-hub.toml
}
# reproducible: a fresh build of the mipsle router image must have the
# bytes of the cached one (the first build). Checked once per set of
# inputs: a stamp names the image.
reproducible() {
	local img fresh=$log/fresh.cpio
	img=$(image mipsle) || return
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
# fit_reproducible: the arm64 and mipsle router images (FITs) built twice
# from the same initramfs and kernel have the same bytes (mkimage stamps
# SOURCE_DATE_EPOCH, the last commit's time). mipsle's initramfs is the one
# reproducible() built; each mipsle build took 4 s (2.5 s CPU, gzip -9 of
# the 12 MB initramfs) at load 10.
fit_reproducible() {
	local arch img
	for arch in arm64 mipsle; do
		img=$(image "$arch") &&
			./scripts/build-fit.sh "$arch" "$img" "$log/1.itb" &&
			./scripts/build-fit.sh "$arch" "$img" "$log/2.itb" &&
			cmp "$log/1.itb" "$log/2.itb" &&
			echo "$arch: $(sha256sum "$log/1.itb" | cut -d' ' -f1)" || return
	done
	rm -f "$log/1.itb" "$log/2.itb"
}
# qemu LANE GO-TEST-FLAGS...: one QEMU lane's go test, its -v output in
# $log/LANE.log. -v: the boot phases and convergence times of a passing
# run are worth reading; a failing guest's whole console is printed with
# its test.
qemu() {
	local lane=$1
	shift
	UROUTE_QEMU=1 go test -count=1 -v -timeout 75m "$@" ./qemu-test/ >"$log/$lane.log" 2>&1
}
# soak: the short soak of issue 11, 5 minutes of flaps, renames and
# replugs under ifmgrd in a netns; it fails on a leak or on a DB commit
# for known hardware (internal/soak).
soak() { ./scripts/soak -duration 5m -out "$log/soak"; }

# The lanes: each runs all its stages, in order, and fails if any did.
qemu_lane_a() { stage qemu-a "QEMU: $qemu_a" qemu qemu-a -run "$qemu_a"; }
qemu_lane_b() { stage qemu-b "QEMU: every other test" qemu qemu-b -skip "$qemu_a"; }
host_lane() {
	local rc=0
	stage host "go test (unit and host-kernel tests)" go test -count=1 -p 1 -timeout 30m "$@" ./... || rc=1
	stage host "soak: 5 min, nothing leaks, no commit for known hardware" soak || rc=1
	stage host "fuzz: every target for 5 s (scripts/fuzz.sh)" ./scripts/fuzz.sh || rc=1
	stage host "big-endian MIPS: ifmgr/... and persist under qemu-user" ./scripts/test-mips-be.sh || rc=1
	stage host "the image is reproducible (mipsle, two builds)" reproducible || rc=1
	stage host "the FIT is reproducible (arm64 and mipsle, two builds each)" fit_reproducible || rc=1
	# The router's initramfs fits 8 MB of flash next to a 2.5 MB kernel:
	# mipsle's, without the Debian kernel's modules (a router's kernel has
	# those drivers built in), at most 3 MB xz'd. Cached by content.
	stage host "the initramfs fits 8 MB of flash (mipsle, <= 3 MB xz, scripts/image-sizes.sh)" \
		./scripts/image-sizes.sh -max-xz 3000000 mipsle || rc=1
	stage host "Buildroot: check-package, defconfigs (TestBuildroot builds)" ./scripts/buildroot-check.sh check || rc=1
	return "$rc"
}

stage serial "deps (scripts/deps.sh)" ./scripts/deps.sh
stage serial "gofmt" gofmt_check
stage serial "go vet (amd64, big-endian mips)" vet
stage serial "staticcheck" go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
stage serial "kernels (fetch-kernel.sh, 5 kernels)" fetch_kernels

qemu_lane_a &
qa=$!
qemu_lane_b &
qb=$!
rc=0
host_lane "$@" || rc=1 # ./scripts/test.sh -run X: flags for the unit tests
wait "$qa" || rc=1
wait "$qb" || rc=1
for f in "$log/qemu-a.log" "$log/qemu-b.log"; do
	[ -f "$f" ] || continue
	echo "== $(basename "$f" .log): go test -v output"
	cat "$f"
done
exit "$rc"
