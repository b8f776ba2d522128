package qemutest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestConsoleStress types N background jobs the way the lifecycle test
// used to ("uroute-probe recv ... > FILE 2>&1 &") and N through
// VM.Spawn, and checks that every one left its file: a hunt for lost or
// mangled console input. Only with UROUTE_QEMU_STRESS=N (rounds per arch).
func TestConsoleStress(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("UROUTE_QEMU_STRESS"))
	if n <= 0 {
		t.Skip("set UROUTE_QEMU_STRESS=N to type N background jobs per arch")
	}
	ForEachArch(t, func(t *testing.T, a Arch) {
		kernel := Requirements(t, a)
		vm := Boot(t, Config{Arch: a, Kernel: kernel, Initrd: BuildImage(t, a, Profile("qemu-vlan-hub"))})
		if _, err := vm.WaitShell(a.Scale(120 * time.Second)); err != nil {
			t.Fatal(err)
		}
		to := a.Scale(20 * time.Second)
		lost := 0
		for i := 0; i < n; i++ {
			f := fmt.Sprintf("/tmp/typed%d", i)
			vm.MustRun(fmt.Sprintf("uroute-probe recv eth0 m%d 1 > %s 2>&1 &", i, f), to)
			out, status, err := vm.Run("ls "+f, to)
			if err != nil {
				t.Fatal(err)
			}
			if status != 0 {
				lost++
				t.Errorf("typed job %d: no %s: %s", i, f, strings.TrimSpace(out))
			}
		}
		for i := 0; i < n; i++ {
			f := fmt.Sprintf("/tmp/spawned%d", i)
			vm.Spawn(f, "uroute-probe", "recv", "eth0", fmt.Sprintf("m%d", i), "1")
			if out, status, err := vm.Run("ls "+f, to); err != nil || status != 0 {
				t.Errorf("spawned job %d: no %s: %v %s", i, f, err, out)
			}
		}
		t.Logf("%s: %d of %d typed background jobs lost their file", a.Name, lost, n)
	})
}
