#!/usr/bin/env bash
# Runs every test: formatting, vet, staticcheck, and the Go tests. As root,
# the real-kernel tests run inside throw-away network namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/deps.sh
echo "== gofmt"
bad=$(gofmt -l $(git ls-files '*.go') 2>&1 || true)
if [ -n "$bad" ]; then echo "gofmt would change: $bad"; exit 1; fi
echo "== go vet (amd64, and big-endian 32-bit MIPS: the routers ifmgr must run on)"
go vet ./...
GOARCH=mips GOMIPS=softfloat go vet ./...
echo "== staticcheck"
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "== go test"
go test -count=1 -p 1 -timeout 30m "$@" ./...

echo "== big-endian MIPS (ath79-class): ifmgr/... and persist under qemu-user"
./scripts/test-mips-be.sh

echo "== QEMU suite: the image on amd64, arm64, armv7 and mipsle"
# Kernels are cached in $UROUTE_CACHE (default ~/.cache/uroute) across runs.
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
for arch in amd64 arm64 armv7 mipsle; do
	./scripts/fetch-kernel.sh "$arch" "$cache/kernel-$arch"
done
# The flash test (UBIFS on block2mtd) needs MTD, which cloud-amd64 lacks.
FLAVOUR=amd64 ./scripts/fetch-kernel.sh amd64 "$cache/kernel-amd64-generic"
# The crash test (TestCrash) needs device-mapper's log-writes target, which
# a router's image does not carry.
EXTRA_MODULES="dm_mod dm_log_writes" ./scripts/fetch-kernel.sh amd64 "$cache/kernel-amd64-dmlog"
echo "== the image is reproducible: two builds, the same bytes"
repro=$(mktemp -d "${TMPDIR:-/tmp}/uroute-repro.XXXXXX")
for i in 1 2; do
	MODULES_DIR=$cache/kernel-mipsle/modules ./scripts/build-image.sh mipsle "$repro/$i.cpio" 2>/dev/null
done
cmp "$repro/1.cpio" "$repro/2.cpio"
sha256sum "$repro/1.cpio" | cut -d' ' -f1
rm -rf "$repro"

# -v: the boot and convergence times of a passing run are worth reading;
# a failing guest's whole console is printed with its test.
UROUTE_QEMU=1 go test -count=1 -v -timeout 40m ./qemu-test/
