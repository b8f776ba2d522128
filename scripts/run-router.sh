#!/usr/bin/env bash
# Boots uroute under QEMU the way a router boots (docs/upgrade.md): Debian's
# U-Boot loads the FIT from slot A or B of the image flash; the data
# partition holds the allocation DB; a second disk is the upgrade medium.
#
#   scripts/run-router.sh ARCH [--fresh]        ARCH: arm64 | armv7
#       boot the router in $UROUTE_CACHE/router-ARCH (made on first use, or
#       again with --fresh: a factory-fresh flash with VERSION in slot A)
#   scripts/run-router.sh ARCH --prepare
#       make the router's flash if missing, and boot nothing
#       (scripts/uboot-cost.sh boots it itself)
#   scripts/run-router.sh ARCH --medium VERSION
#       from a second terminal: build and sign VERSION of the image and
#       write it to the router's upgrade medium; then, on the router's
#       console: uroute-uinit upgrade /dev/vdb; uroute-uinit shutdown -r
#
# A reboot inside the guest goes back to U-Boot (no -no-reboot); quit QEMU
# with Ctrl-A x. VERSION defaults to "factory" for the first flash.
set -euo pipefail
usage() { sed -n '2,/^set -euo/p' "$0" | sed -e '/^set -euo/d' -e 's/^# \{0,1\}//' >&2; exit 2; }
[ $# -ge 1 ] || usage
arch=$1
shift
case $arch in
arm64) qemu=qemu-system-aarch64 machine=(-M virt -cpu cortex-a57) uboot=qemu_arm64 ;;
armv7) qemu=qemu-system-arm machine=(-M virt,highmem=off -cpu cortex-a15) uboot=qemu_arm ;;
*) usage ;;
esac
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
dir=$cache/router-$arch
kdir=$cache/kernel-$arch
cpio=$dir/image.cpio

# build VERSION OUT.itb: the image (once) and its FIT.
build() {
	mkdir -p "$dir"
	[ -f "$kdir/vmlinuz" ] || "$repo/scripts/fetch-kernel.sh" "$arch" "$kdir" >&2
	if [ ! -f "$cpio" ]; then
		pub=$("$repo/scripts/sign-image.sh" --public-key)
		UPGRADE_KEYS=$pub MODULES_DIR=$kdir/modules "$repo/scripts/build-image.sh" "$arch" "$cpio" >&2
	fi
	VERSION=$1 KERNEL=$kdir/vmlinuz "$repo/scripts/build-fit.sh" "$arch" "$cpio" "$2"
}

case ${1:-} in
--medium)
	[ $# -eq 2 ] || usage
	[ -f "$dir/medium.img" ] || { echo "$0: no router in $dir; boot it first" >&2; exit 1; }
	build "$2" "$dir/$2.itb"
	"$repo/scripts/sign-image.sh" "$dir/$2.itb" "$dir/$2.img"
	dd if="$dir/$2.img" of="$dir/medium.img" conv=notrunc status=none
	echo "run-router: $2 is on the medium; on the router: uroute-uinit upgrade /dev/vdb" >&2
	exit 0
	;;
--fresh) rm -rf "$dir/flash" ;;
--prepare | "") ;;
*) usage ;;
esac

if [ ! -f "$dir/flash/disk.img" ]; then
	build "${VERSION:-factory}" "$dir/factory.itb"
	"$repo/scripts/make-flash.sh" "$arch" "$dir/factory.itb" "$dir/flash"
	truncate -s 48M "$dir/medium.img"
fi
[ "${1:-}" != --prepare ] || exit 0
exec "$qemu" "${machine[@]}" -accel tcg -m 512 -nodefaults -nographic \
	-bios "/usr/lib/u-boot/$uboot/u-boot.bin" \
	-drive "if=pflash,format=raw,unit=1,file=$dir/flash/nor.img" \
	-drive "file=$dir/flash/disk.img,if=none,id=flash,format=raw" -device virtio-blk-pci,drive=flash \
	-drive "file=$dir/medium.img,if=none,id=medium,format=raw" -device virtio-blk-pci,drive=medium \
	-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01,romfile= \
	-netdev hubport,id=n1,hubid=1 -device virtio-net-pci,netdev=n1,mac=52:54:00:12:34:02,romfile= \
	-serial mon:stdio
