package board

import (
	"os"
	"path/filepath"
	"strings"
)

// SysfsFacts reads what sysfs says about the hardware behind link ifname:
// the basename of /sys/class/net/IF/device/driver (the driver ethtool
// reports) and the path of the device relative to /sys/devices. Both are ""
// for a virtual link, which has no device. sysRoot is where sysfs is
// mounted, normally "/sys" (the default if empty); tests pass a fake tree.
func SysfsFacts(sysRoot, ifname string) (driver, bus string) {
	if sysRoot == "" {
		sysRoot = "/sys"
	}
	if ifname == "" || ifname == "." || ifname == ".." || strings.ContainsRune(ifname, '/') {
		return "", ""
	}
	dev := filepath.Join(sysRoot, "class", "net", ifname, "device")
	// A virtual link (veth, bridge, VLAN) has no device: one lstat says so,
	// where the reads below walk the whole path twice to find it missing.
	// A profile's bring-up asks this of every port candidate before its
	// first request (40 ms for 1000 veths, scripts/bench's where section).
	if _, err := os.Lstat(dev); err != nil {
		return "", ""
	}
	if target, err := os.Readlink(filepath.Join(dev, "driver")); err == nil {
		driver = filepath.Base(target)
	}
	real, err := filepath.EvalSymlinks(dev)
	if err != nil {
		return driver, ""
	}
	devices, err := filepath.EvalSymlinks(filepath.Join(sysRoot, "devices"))
	if err != nil {
		return driver, ""
	}
	rel, err := filepath.Rel(devices, real)
	if err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return driver, ""
	}
	return driver, filepath.ToSlash(rel)
}
