#!/usr/bin/env bash
# Lays out a router's flash for QEMU, as a factory would program it
# (docs/upgrade.md):
#
#   scripts/make-flash.sh ARCH IMAGE.itb OUTDIR     ARCH: arm64 | armv7
#
# OUTDIR/nor.img   U-Boot's own flash (QEMU's second pflash, 64 MiB): U-Boot
#                  reads its environment from its start, and the factory
#                  environment there says where things are in RAM and
#                  runs the boot script from the disk.
# OUTDIR/disk.img  the image flash (virtio-blk, the guest's /dev/vda), GPT:
#                    1 uboot-script  1 MiB  firmware/uboot/boot.cmd (mkimage -T script)
#                    2 uboot-env     1 MiB  A/B state: two 64 KiB env copies
#                    3 slot-a       48 MiB  the FIT from scripts/build-fit.sh
#                    4 slot-b       48 MiB  empty until the first upgrade
#                    5 data         64 MiB  ext4, the allocation DB (/data)
#
# Run QEMU with -bios /usr/lib/u-boot/qemu_ARCH/u-boot.bin
# -drive if=pflash,unit=1,file=OUTDIR/nor.img and the disk on virtio-blk-pci
# (scripts/run-router.sh does).
#
# Environment: SOURCE_DATE_EPOCH (default: the last commit's time) stamps
# the boot script, so the same inputs give the same bytes (the data
# partition's ext4 excepted: mkfs.ext4 writes the time of day).
set -euo pipefail
usage() { echo "usage: $0 arm64|armv7 IMAGE.itb OUTDIR" >&2; exit 2; }
[ $# -eq 3 ] || usage
arch=$1 fit=$2 outdir=$3
repo=$(cd "$(dirname "$0")/.." && pwd)
case $arch in
arm64 | armv7) tty=ttyAMA0 ;;
*) usage ;;
esac
: "${SOURCE_DATE_EPOCH:=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}"
export SOURCE_DATE_EPOCH
for t in mkimage:u-boot-tools mkenvimage:u-boot-tools sfdisk:fdisk mkfs.ext4:e2fsprogs; do
	command -v "${t%%:*}" >/dev/null || { echo "$0: ${t%%:*} missing (apt-get install ${t#*:})" >&2; exit 1; }
done
[ -f "$fit" ] || { echo "$0: no image $fit" >&2; exit 1; }
mib=1048576
slot=48
[ "$(stat -c %s "$fit")" -le $((slot * mib)) ] || { echo "$0: $fit is larger than a $slot MiB slot" >&2; exit 1; }
mkdir -p "$outdir"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/uroute-flash.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# U-Boot's flash: the factory environment (mkenvimage: CRC32 + variables,
# CONFIG_ENV_SIZE 0x40000 of Debian's qemu_arm and qemu_arm64 builds) at
# offset 0. The FIT goes 128 MiB into RAM (0x48000000), clear of the
# kernel U-Boot unpacks at 0x40400000 and of U-Boot itself at the top.
cat >"$tmp/env.txt" <<ENV
bootdelay=0
ur_envaddr=0x47f00000
ur_scriptaddr=0x47e00000
ur_fitaddr=0x48000000
ur_bootargs=console=$tty quiet uroute.data=/dev/vda5
bootcmd=virtio scan; part start virtio 0 uboot-script ur_blk && virtio read \${ur_scriptaddr} \${ur_blk} 800 && source \${ur_scriptaddr}; echo uroute: no boot script; reset
ENV
mkenvimage -s 0x40000 -o "$tmp/env.bin" "$tmp/env.txt"
truncate -s 64M "$tmp/nor.img"
dd if="$tmp/env.bin" of="$tmp/nor.img" conv=notrunc status=none

# The image flash. Fixed UUIDs: the layout is the same on every router.
disk=$tmp/disk.img
truncate -s $((166 * mib)) "$disk"
sfdisk -q "$disk" <<PARTS
label: gpt
label-id: 6F1B3C2E-8A0D-4E55-9C4B-0A1D2E3F4A50
start=2048, size=2048, name=uboot-script, uuid=6F1B3C2E-8A0D-4E55-9C4B-0A1D2E3F4A51
start=4096, size=2048, name=uboot-env, uuid=6F1B3C2E-8A0D-4E55-9C4B-0A1D2E3F4A52
start=8192, size=$((slot * 2048)), name=slot-a, uuid=6F1B3C2E-8A0D-4E55-9C4B-0A1D2E3F4A53
start=$((8192 + slot * 2048)), size=$((slot * 2048)), name=slot-b, uuid=6F1B3C2E-8A0D-4E55-9C4B-0A1D2E3F4A54
start=$((8192 + 2 * slot * 2048)), size=131072, name=data, uuid=6F1B3C2E-8A0D-4E55-9C4B-0A1D2E3F4A55
PARTS
mkimage -A "${arch/armv7/arm}" -O linux -T script -C none -n "uroute A/B boot" \
	-d "$repo/firmware/uboot/boot.cmd" "$tmp/boot.scr" >/dev/null
(cd "$repo" && CGO_ENABLED=0 go run ./firmware/cmd/uroute-fw env "$tmp/env-part.bin")
truncate -s 64M "$tmp/data.img"
mkfs.ext4 -q -F "$tmp/data.img"
put() { dd if="$1" of="$disk" bs=512 seek="$2" conv=notrunc status=none; }
put "$tmp/boot.scr" 2048
put "$tmp/env-part.bin" 4096
put "$fit" 8192
put "$tmp/data.img" $((8192 + 2 * slot * 2048))
mv "$tmp/nor.img" "$outdir/nor.img"
mv "$disk" "$outdir/disk.img"
echo "make-flash: $outdir/nor.img, $outdir/disk.img (slot A: $(basename "$fit"))" >&2
