#!/bin/sh
# Writes images/start-qemu.sh: boots the kernel and the ext4 rootfs on QEMU's
# aarch64 virt machine with two virtio NICs (the qemu-arm64 profile's ports)
# and a serial console.
set -e
cat > "$BINARIES_DIR/start-qemu.sh" <<'EOS'
#!/bin/sh
cd "$(dirname "$0")"
exec qemu-system-aarch64 -M virt -cpu cortex-a53 -m 512 -nographic \
	-kernel Image -append "rootwait root=/dev/vda console=ttyAMA0" \
	-drive file=rootfs.ext4,if=none,format=raw,id=hd0 \
	-device virtio-blk-device,drive=hd0 \
	-netdev hubport,id=n0,hubid=0 -device virtio-net-pci,netdev=n0,romfile= \
	-netdev hubport,id=n1,hubid=1 -device virtio-net-pci,netdev=n1,romfile= \
	"$@"
EOS
chmod +x "$BINARIES_DIR/start-qemu.sh"
