#!/bin/sh
# BPI-R3 SD card image: the mainline DTB with the SD overlay applied (the
# base DTB leaves the SD slot off; U-Boot then needs no overlay support),
# an extlinux.conf for U-Boot's standard boot, and genimage.cfg's layout.
set -eu

board_dir=$(cd "$(dirname "$0")" && pwd)
top=$(pwd) # Buildroot runs post-image scripts from its top directory
cd "$BINARIES_DIR"
"$HOST_DIR"/bin/fdtoverlay -i mt7986a-bananapi-bpi-r3.dtb \
	-o mt7986a-bananapi-bpi-r3-sd.dtb mt7986a-bananapi-bpi-r3-sd.dtbo
mkdir -p extlinux
cat > extlinux/extlinux.conf <<'EOC'
label uroute
  kernel /Image
  fdt /mt7986a-bananapi-bpi-r3-sd.dtb
  append console=ttyS0,115200 root=/dev/mmcblk0p6 rootwait rw
EOC
cd "$top"
exec support/scripts/genimage.sh -c "$board_dir/genimage.cfg"
