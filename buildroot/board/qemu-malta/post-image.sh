#!/bin/sh
# Writes images/start-qemu.sh: boots the kernel and the ext4 rootfs on QEMU's
# malta with two virtio NICs (the qemu-mipsle profile's ports) and a serial
# console. Run from the images directory.
set -e
cat > "$BINARIES_DIR/start-qemu.sh" <<'EOS'
#!/bin/sh
cd "$(dirname "$0")"
exec qemu-system-mipsel -M malta -m 256 -nographic \
	-kernel vmlinux -append "rootwait root=/dev/sda console=ttyS0" \
	-drive file=rootfs.ext4,format=raw \
	-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,romfile= \
	-netdev hubport,id=n1,hubid=1 -device virtio-net-pci,netdev=n1,romfile= \
	"$@"
EOS
chmod +x "$BINARIES_DIR/start-qemu.sh"
