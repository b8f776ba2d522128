#!/usr/bin/env bash
# Measures what booting through U-Boot costs over a direct -kernel boot,
# per architecture, and prints it as a Markdown table (docs/upgrade.md,
# "Cost"):
#
#   scripts/uboot-cost.sh [-n N] ARCH...      ARCH: arm64 | armv7
#
# For each ARCH it boots the router of scripts/run-router.sh (its flash
# made on first use in $UROUTE_CACHE/router-ARCH) N times (default 3) each way, with the
# same kernel, the same gzip'ed initramfs and the same flash:
#   uboot   Debian's U-Boot from -bios loads the FIT from slot A
#           (firmware/uboot/boot.cmd: env copies, 48 MiB slot read, sha256
#           of kernel and initramfs), as every router boot does;
#   direct  QEMU's -kernel/-initrd, as the rest of the QEMU suite boots.
# The time is from QEMU's start to u-root's banner ("Welcome to u-root"):
# the kernel has then booted and unpacked the initramfs; what differs is
# U-Boot. The flash is attached with snapshot=on, so no boot changes it
# (U-Boot's attempt counter included) and every boot starts from the same
# state. Columns: min and median of the N boots, and the median's
# difference. TCG timings move with the host's load: run it on a quiet
# host, and read the table with the load average it prints.
set -euo pipefail
usage() { echo "usage: $0 [-n N] arm64|armv7..." >&2; exit 2; }
n=3
if [ "${1:-}" = -n ]; then
	n=${2:?}
	shift 2
fi
[ $# -ge 1 ] || usage
repo=$(cd "$(dirname "$0")/.." && pwd)
cache=${UROUTE_CACHE:-$HOME/.cache/uroute}
limit=300 # seconds a boot may take before it counts as failed

# banner QEMU-ARGS...: seconds from QEMU's start to u-root's banner.
banner() {
	local start line
	start=$EPOCHREALTIME
	coproc QEMU { exec timeout "$limit" "$@" </dev/null 2>&1; }
	while IFS= read -r line <&"${QEMU[0]}"; do
		if [[ $line == *"Welcome to u-root"* ]]; then
			kill "$QEMU_PID" 2>/dev/null || true
			wait "$QEMU_PID" 2>/dev/null || true
			awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f\n", b - a }'
			return 0
		fi
	done
	wait "$QEMU_PID" 2>/dev/null || true
	echo "$0: no u-root banner within ${limit}s" >&2
	return 1
}

# stats: min and median of the numbers on stdin.
stats() { sort -n | awk '{ v[NR] = $1 } END { printf "%.1f %.1f\n", v[1], v[int((NR + 1) / 2)] }'; }

echo "| arch | direct -kernel: min / median | through U-Boot: min / median | U-Boot's cost (median) |"
echo "| --- | --- | --- | --- |"
for arch in "$@"; do
	case $arch in
	arm64) qemu=qemu-system-aarch64 machine=(-M virt -cpu cortex-a57) uboot=qemu_arm64 tty=ttyAMA0 ;;
	armv7) qemu=qemu-system-arm machine=(-M virt,highmem=off -cpu cortex-a15) uboot=qemu_arm tty=ttyAMA0 ;;
	*) usage ;;
	esac
	dir=$cache/router-$arch
	"$repo/scripts/run-router.sh" "$arch" --prepare
	[ -f "$dir/flash/disk.img" ] || { echo "$0: no router flash in $dir" >&2; exit 1; }
	# The FIT's initramfs, as build-fit.sh compresses it, for -initrd.
	if [ ! "$dir/image.cpio.gz" -nt "$dir/image.cpio" ]; then
		gzip -9 -n -c "$dir/image.cpio" >"$dir/image.cpio.gz"
	fi
	common=("${machine[@]}" -accel tcg -m 512 -nodefaults -nographic -no-reboot -serial stdio
		-drive "file=$dir/flash/disk.img,if=none,id=flash,format=raw,snapshot=on" -device virtio-blk-pci,drive=flash
		-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01,romfile=
		-netdev hubport,id=n1,hubid=1 -device virtio-net-pci,netdev=n1,mac=52:54:00:12:34:02,romfile=)
	direct=() through=()
	for _ in $(seq "$n"); do
		direct+=("$(banner "$qemu" "${common[@]}" -kernel "$cache/kernel-$arch/vmlinuz" -initrd "$dir/image.cpio.gz" \
			-append "console=$tty quiet uroute.data=/dev/vda5")")
		through+=("$(banner "$qemu" "${common[@]}" -bios "/usr/lib/u-boot/$uboot/u-boot.bin" \
			-drive "if=pflash,format=raw,unit=1,file=$dir/flash/nor.img,snapshot=on")")
	done
	read -r dmin dmed < <(printf '%s\n' "${direct[@]}" | stats)
	read -r umin umed < <(printf '%s\n' "${through[@]}" | stats)
	echo "| $arch | $dmin s / $dmed s | $umin s / $umed s | $(awk -v a="$umed" -v b="$dmed" 'BEGIN { printf "%.1f", a - b }') s |"
done
echo
echo "$n boots each way per arch; $(date -u +%F), load average $(cut -d' ' -f1-3 /proc/loadavg)."
