#!/bin/sh
# EdgeRouter X images, from vmlinux.bin (the kernel, with the rootfs built in
# as its initramfs) and the board's DTB:
#
#   uImage                  vmlinux.bin with the DTB appended
#                           (CONFIG_MIPS_RAW_APPENDED_DTB), lzma-compressed,
#                           as a U-Boot legacy image loaded at 0x80001000,
#                           the MT7621's kernel load address: boot it from
#                           RAM over TFTP (readme.txt)
#   uroute-erx-factory.tar  the same kernel in the tar EdgeOS's
#                           "add system image" takes (the layout OpenWrt's
#                           ubnt-erx-factory-image writes), made only if the
#                           kernel fits the 3 MiB kernel1/kernel2 partitions
set -eu

cd "$BINARIES_DIR"
dtb=mt7621-ubnt-edgerouter-x.dtb
vmlinux=$(find "$BUILD_DIR" -maxdepth 2 -path '*/linux-*/vmlinux' | head -n 1)
# The kernel's entry point (kernel_entry), from its ELF header.
readelf=$(find "$HOST_DIR/bin" -name '*-linux-*readelf' | head -n 1)
entry=$("$readelf" -h "$vmlinux" | sed -n 's/.*Entry point address: *//p')

cat vmlinux.bin "$dtb" > vmlinux-dtb.bin
"$HOST_DIR"/bin/xz --format=lzma -9 -c vmlinux-dtb.bin > vmlinux-dtb.bin.lzma
"$HOST_DIR"/bin/mkimage -A mips -O linux -T kernel -C lzma \
	-a 0x80001000 -e "$entry" -n "uroute EdgeRouter X" \
	-d vmlinux-dtb.bin.lzma uImage

size=$(stat -c %s uImage)
limit=3145728
if [ "$size" -gt "$limit" ]; then
	echo "post-image: uImage is $size bytes, more than kernel1's $limit:" \
		"no factory image; boot it over TFTP (readme.txt)" >&2
	rm -f uroute-erx-factory.tar
	exit 0
fi
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "21001:6" > "$work/compat"
cp uImage "$work/vmlinux.tmp"
md5sum < uImage | cut -d' ' -f1 > "$work/vmlinux.tmp.md5"
echo "dummy" > "$work/squashfs.tmp"
md5sum < "$work/squashfs.tmp" | cut -d' ' -f1 > "$work/squashfs.tmp.md5"
echo "uroute" > "$work/version.tmp"
tar -C "$work" -cf uroute-erx-factory.tar compat vmlinux.tmp vmlinux.tmp.md5 \
	squashfs.tmp squashfs.tmp.md5 version.tmp
