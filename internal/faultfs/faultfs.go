// Package faultfs gives tests file-system faults on the real kernel: a
// small tmpfs filled to the last block (ENOSPC) and a read-only bind mount
// (EROFS) that can be made writable again. It needs root and a real kernel
// of the test's architecture; elsewhere the calling test is skipped.
package faultfs

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/uroute/uroute/internal/qemuuser"
	"golang.org/x/sys/unix"
)

// Require skips t unless mounts can be made.
func Require(t testing.TB) {
	t.Helper()
	if qemuuser.Active() {
		t.Skip(qemuuser.Reason)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts a tmpfs")
	}
}

// Tmpfs mounts a tmpfs of size bytes on dir (made if missing), unmounted
// when the test ends.
func Tmpfs(t testing.TB, dir string, size int64) {
	t.Helper()
	Require(t)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, fmt.Sprintf("size=%d,mode=0755", size)); err != nil {
		t.Fatalf("mount tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
}

// Fill writes a file in dir until the file system has no block left, and
// returns its path: removing it frees the space again.
func Fill(t testing.TB, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, unix.ENOSPC) {
				t.Fatalf("filling %s: %v", dir, err)
			}
			break
		}
	}
	// The last partial blocks, byte by byte in 512s.
	for n := 512; n > 0; n /= 2 {
		for {
			if _, err := f.Write(buf[:n]); err != nil {
				break
			}
		}
	}
	return path
}

// ReadOnly bind-mounts dir read-only onto itself, until the test ends or
// the returned function makes it writable again (by unmounting the bind).
func ReadOnly(t testing.TB, dir string) (writable func()) {
	t.Helper()
	Require(t)
	if err := unix.Mount(dir, dir, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind %s: %v", dir, err)
	}
	if err := unix.Mount("", dir, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		unix.Unmount(dir, unix.MNT_DETACH)
		t.Fatalf("remount %s read-only: %v", dir, err)
	}
	done := false
	writable = func() {
		if !done {
			done = true
			if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
				t.Errorf("unmount read-only bind of %s: %v", dir, err)
			}
		}
	}
	t.Cleanup(writable)
	return writable
}
