#!/usr/bin/env bash
# Prints a Markdown table of the image's sizes per architecture: the
# initramfs without the kernel's modules (what a router whose kernel has
# those drivers built in carries: cpio and xz), the busybox binary in it
# that holds every command (/bbin/bb: ifmgrd, ifctl, uinit and u-root's),
# and, apart, the Debian kernel's modules that scripts/run-qemu.sh's image
# adds (their bytes, and xz'd together).
#
#   scripts/image-sizes.sh [-max-xz BYTES] [-json FILE] [ARCH...]
#                                       default ARCH: amd64 arm64 armv7 mipsle
#
#   -max-xz BYTES  fail (exit 1) if mipsle's initramfs without modules is
#                  larger than BYTES xz'd (scripts/test.sh: 3000000, the
#                  8 MB-flash target)
#   -json FILE     also write the figures as JSON (internal/results reads it)
#
# Each arch's image has its qemu-ARCH profile. Images come from the
# content-addressed cache (qemu-test/cmd/uroute-image, $UROUTE_CACHE/images),
# so a rerun with nothing changed builds nothing; kernels are fetched into
# $UROUTE_CACHE/kernel-ARCH (default ~/.cache/uroute) if missing. xz is
# "xz -9 --check=crc32" (the kernel's initramfs decompressor needs crc32),
# 1 MB = 10^6 bytes.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
cd "$repo"
export UROUTE_CACHE=${UROUTE_CACHE:-$HOME/.cache/uroute}
max_xz="" json=""
while [ $# -gt 0 ]; do
	case $1 in
	-max-xz) max_xz=$2; shift 2 ;;
	-json) json=$2; shift 2 ;;
	-*) echo "usage: $0 [-max-xz BYTES] [-json FILE] [ARCH...]" >&2; exit 2 ;;
	*) break ;;
	esac
done
arches=("$@")
[ ${#arches[@]} -gt 0 ] || arches=(amd64 arm64 armv7 mipsle)
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uroute-sizes.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# Its own uroute-image: $UROUTE_CACHE/bin may be shared with other trees.
go build -o "$tmp/uroute-image" ./qemu-test/cmd/uroute-image

mb() { awk -v b="$1" 'BEGIN { printf "%.2f MB", b / 1e6 }'; }
xzsize() { xz -9 --check=crc32 -T1 -c "$1" | wc -c; }

echo "| arch | initramfs without modules: cpio | xz | of which /bbin/bb | bb xz'd | kernel | its modules | modules xz'd |"
echo "| --- | ---: | ---: | ---: | ---: | --- | ---: | ---: |"
over=
records=()
for arch in "${arches[@]}"; do
	kdir=$UROUTE_CACHE/kernel-$arch
	[ -f "$kdir/modules/load-order" ] || ./scripts/fetch-kernel.sh "$arch" "$kdir" >&2
	profile=board/profiles/qemu-$arch.toml
	bare=$("$tmp/uroute-image" -no-modules "$arch" "$profile" 2>"$tmp/log") || { cat "$tmp/log" >&2; exit 1; }
	(cd "$tmp" && cpio -i --quiet --to-stdout bbin/bb < "$bare" > "$tmp/bb")
	bare_cpio=$(stat -c %s "$bare")
	bare_xz=$(xzsize "$bare")
	bb=$(stat -c %s "$tmp/bb")
	bb_xz=$(xzsize "$tmp/bb")
	cat "$kdir"/modules/*.ko > "$tmp/modules"
	modules=$(stat -c %s "$tmp/modules")
	modules_xz=$(xzsize "$tmp/modules")
	kernel=$(cat "$kdir/kernel.version")
	echo "| $arch | $(mb "$bare_cpio") | **$(mb "$bare_xz")** | $(mb "$bb") | $(mb "$bb_xz") | $kernel | $(mb "$modules") | $(mb "$modules_xz") |"
	records+=("$(printf '"%s": {"cpio_bytes": %d, "xz_bytes": %d, "bb_bytes": %d, "bb_xz_bytes": %d, "kernel": "%s", "modules_bytes": %d, "modules_xz_bytes": %d}' \
		"$arch" "$bare_cpio" "$bare_xz" "$bb" "$bb_xz" "$kernel" "$modules" "$modules_xz")")
	if [ "$arch" = mipsle ] && [ -n "$max_xz" ] && [ "$bare_xz" -gt "$max_xz" ]; then
		over="mipsle's initramfs without modules is $bare_xz bytes xz'd, over the $max_xz-byte target"
	fi
done
if [ -n "$json" ]; then
	{
		echo "{"
		echo "  \"command\": \"scripts/image-sizes.sh ${arches[*]}\","
		echo "  \"date\": \"$(date -u +%Y-%m-%d)\","
		echo "  \"max_xz_bytes\": ${max_xz:-3000000},"
		echo "  \"arches\": {"
		for i in "${!records[@]}"; do
			sep=,
			[ "$i" -eq $((${#records[@]} - 1)) ] && sep=
			echo "    ${records[$i]}$sep"
		done
		echo "  }"
		echo "}"
	} > "$json"
fi
if [ -n "$max_xz" ]; then
	if [ -n "$over" ]; then
		echo "image-sizes.sh: $over" >&2
		exit 1
	fi
	case " ${arches[*]} " in
	*" mipsle "*) echo "mipsle's initramfs without modules is within $max_xz bytes xz'd" ;;
	*) echo "image-sizes.sh: -max-xz checks mipsle, which is not among the arches" >&2; exit 2 ;;
	esac
fi
