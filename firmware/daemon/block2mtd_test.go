package daemon

import (
	"os"
	"path/filepath"
	"testing"
)

func TestBlock2mtdBacking(t *testing.T) {
	root := t.TempDir()
	old := sysRoot
	sysRoot = root
	defer func() { sysRoot = old }()
	put := func(p, text string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, p), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	put("/proc/self/mountinfo", `1 0 0:1 / / rw - rootfs rootfs rw
20 1 0:5 / /proc rw - proc proc rw
30 1 0:30 / /data rw,noatime - ubifs ubi0:data rw
31 1 31:1 / /data/nor rw - jffs2 mtd1 rw
32 1 31:2 / /data/real rw - jffs2 mtd2 rw
33 1 0:33 / /data\040x rw - ubifs ubi1_0 rw
`)
	put("/sys/class/ubi/ubi0/mtd_num", "0\n")
	put("/sys/class/ubi/ubi1/mtd_num", "2\n")
	put("/sys/class/mtd/mtd0/name", "block2mtd: /dev/vda\n")
	put("/sys/class/mtd/mtd1/name", "block2mtd: /dev/vdb\n")
	put("/sys/class/mtd/mtd2/name", "nor\n")
	for dir, want := range map[string]string{
		"/data/uroute":   "/dev/vda",
		"/data":          "/dev/vda",
		"/data/nor/x":    "/dev/vdb",
		"/data/real/db":  "", // phram or a real chip: writes are synchronous
		"/data x/uroute": "", // ubi1 on mtd2
		"/tmp":           "", // rootfs
		"/datax":         "",
	} {
		if got := block2mtdBacking(dir); got != want {
			t.Errorf("%s: %q, want %q", dir, got, want)
		}
	}
}
