package qemutest

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// TestConsoleStress starts N background jobs through VM.Spawn and then N
// typed the way the lifecycle test used to ("uroute-probe recv ... > FILE
// 2>&1 &"), and checks that every one made its file, and how soon: a hunt
// for lost console input and jobs that never start. Only with UROUTE_QEMU_STRESS=N (rounds per arch).
func TestConsoleStress(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("UROUTE_QEMU_STRESS"))
	if n <= 0 {
		t.Skip("set UROUTE_QEMU_STRESS=N to type N background jobs per arch")
	}
	ForEachArch(t, func(t *testing.T, a Arch) {
		kernel := Requirements(t, a)
		vm := Boot(t, Config{Arch: a, Kernel: kernel, Initrd: BuildImage(t, a, Profile("qemu-vlan-hub")),
			Timeout: a.Scale(time.Duration(n) * 20 * time.Second)})
		if _, err := vm.WaitShell(a.Scale(300 * time.Second)); err != nil {
			t.Fatal(err)
		}
		to := a.Scale(20 * time.Second)
		for i := 0; i < n; i++ {
			f := fmt.Sprintf("/tmp/spawned%d", i)
			vm.Spawn(f, "uroute-probe", "recv", "eth0", fmt.Sprintf("m%d", i), "1")
			if out, status, err := vm.Run("test -e "+f, to); err != nil || status != 0 {
				t.Errorf("spawned job %d: no %s: %v %s", i, f, err, out)
			}
		}
		// UROUTE_QEMU_STRESS_POLL: how long the shell stays idle between
		// checks for a typed job's file (default 200ms).
		poll, err := time.ParseDuration(os.Getenv("UROUTE_QEMU_STRESS_POLL"))
		if err != nil {
			poll = 200 * time.Millisecond
		}
		lost := 0
		var slowest time.Duration
		for i := 0; i < n; i++ {
			f := fmt.Sprintf("/tmp/typed%d", i)
			vm.MustRun(fmt.Sprintf("uroute-probe recv eth0 m%d 1 > %s 2>&1 &", i, f), to)
			start := time.Now()
			for {
				_, status, err := vm.Run("test -e "+f, to)
				if err != nil {
					t.Fatalf("typed job %d: %v", i, err)
				}
				if status == 0 {
					if d := time.Since(start); d > slowest {
						slowest = d
					}
					break
				}
				if time.Since(start) > a.Scale(10*time.Second) {
					lost++
					t.Errorf("typed job %d: no %s after %v", i, f, time.Since(start).Round(time.Millisecond))
					break
				}
				time.Sleep(poll)
			}
		}
		t.Logf("%s: typed jobs (checked every %v): %d of %d never made their file; the slowest took %v", a.Name, poll, lost, n, slowest.Round(time.Millisecond))
	})
}
