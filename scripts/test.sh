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

echo "== QEMU: VLANs on the wire in an amd64 guest"
# The rest of the QEMU suite (all four architectures) arrives with issue 4.
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
./scripts/fetch-kernel.sh amd64 "$cache/kernel-amd64"
UROUTE_QEMU=1 go test -count=1 -timeout 10m -run TestVLANOnTheWire ./qemu-test/
