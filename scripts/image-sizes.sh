#!/usr/bin/env bash
# Builds the image for each architecture with its qemu-ARCH profile and its
# kernel's modules (as scripts/run-qemu.sh boots it) and prints a Markdown
# table of the sizes: cpio, gzip -9, xz -9, and ifmgrd stripped.
#
#   scripts/image-sizes.sh [ARCH...]      default: amd64 arm64 armv7 mipsle
#
# Kernels are fetched into $UROUTE_CACHE/kernel-ARCH (default
# ~/.cache/uroute) if missing; images are built in a temporary directory.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64 armv7 mipsle)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uroute-sizes.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
size() { stat -c %s "$1"; }

echo "| arch | kernel | modules | cpio | cpio.gz | cpio.xz | ifmgrd (stripped) |"
echo "| --- | --- | ---: | ---: | ---: | ---: | ---: |"
for arch in "${arches[@]}"; do
	kdir=$cache/kernel-$arch
	[ -f "$kdir/modules/load-order" ] || "$repo/scripts/fetch-kernel.sh" "$arch" "$kdir" >&2
	out=$tmp/$arch.cpio
	COMPRESS=gz MODULES_DIR=$kdir/modules "$repo/scripts/build-image.sh" "$arch" "$out" 2>/dev/null
	xz -9 --check=crc32 -T1 -c "$out" > "$out.xz"
	case $arch in
	amd64) env=(GOARCH=amd64) ;;
	arm64) env=(GOARCH=arm64) ;;
	armv7) env=(GOARCH=arm GOARM=7) ;;
	mipsle) env=(GOARCH=mipsle GOMIPS=softfloat) ;;
	esac
	(cd "$repo" && env CGO_ENABLED=0 GOOS=linux "${env[@]}" go build -trimpath -ldflags='-s -w -buildid=' \
		-o "$tmp/ifmgrd-$arch" ./firmware/cmd/ifmgrd)
	modules=$(du -sb "$kdir/modules" | cut -f1)
	echo "| $arch | $(cat "$kdir/kernel.version") | $(mb "$modules") | $(mb "$(size "$out")") | $(mb "$(size "$out.gz")") | $(mb "$(size "$out.xz")") | $(mb "$(size "$tmp/ifmgrd-$arch")") |"
done
