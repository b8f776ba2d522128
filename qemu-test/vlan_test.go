package qemutest

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestVLANOnTheWire boots the amd64 image with qemu-test/profiles/
// qemu-amd64-vlan-hub.toml (VLAN 10 on every NIC, no bridges) and both NICs
// on one QEMU hub, so the guest's eth0 and eth1 share a wire. A frame sent
// untagged on vlan0 (eth0.10) must come out of vlan1 (eth1.10), and eth1
// itself must see it carrying 802.1Q tag 10.
func TestVLANOnTheWire(t *testing.T) {
	kernel := Requirements(t)
	initrd := BuildImage(t, filepath.Join(RepoRoot(), "qemu-test", "profiles", "qemu-amd64-vlan-hub.toml"))

	vm := Boot(t, Config{Kernel: kernel, Initrd: initrd, Hubs: [2]int{0, 0}})
	ready, err := vm.WaitShell(120 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("shell ready %v after QEMU start", ready.Round(time.Millisecond))

	// ifmgrd creates the VLANs from the profile shortly after it starts.
	var list string
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, status, err := vm.Run("ifctl list", 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		list = out
		if status == 0 && hasWord(out, "vlan0") && hasWord(out, "vlan1") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("ifctl list (status %d) never showed vlan0 and vlan1:\n%s", status, out)
		}
		time.Sleep(time.Second)
	}
	t.Logf("VLANs ready %v after QEMU start; ifctl list:\n%s", vm.Since().Round(time.Millisecond), list)

	// No "ip link set up" here: ifmgrd must have brought the VLANs (and
	// so their parents) up by itself.
	t.Logf("ip link:\n%s", vm.MustRun("ip link", 10*time.Second))

	marker := fmt.Sprintf("m%d", time.Now().UnixNano()%1e9)
	vm.MustRun("rm -f /tmp/r-vlan1 /tmp/r-eth1", 10*time.Second)
	vm.MustRun("uroute-probe recv vlan1 "+marker+" 20 > /tmp/r-vlan1 2>&1 &", 10*time.Second)
	vm.MustRun("uroute-probe recv eth1 "+marker+" 20 > /tmp/r-eth1 2>&1 &", 10*time.Second)
	waitFiles(t, vm, "probe: listening on", 15*time.Second)
	t.Logf("send: %s", strings.TrimSpace(vm.MustRun("uroute-probe send vlan0 "+marker, 20*time.Second)))
	got := waitFiles(t, vm, "probe: (received|timeout)", 30*time.Second)

	want := map[string]string{
		"/tmp/r-vlan1": "probe: received " + marker + " on vlan1 vid=none",
		"/tmp/r-eth1":  "probe: received " + marker + " on eth1 vid=10",
	}
	for f, w := range want {
		t.Logf("%s: %s", f, strings.TrimSpace(got[f]))
		if !strings.Contains(got[f], w) {
			t.Errorf("%s: want line %q, got:\n%s", f, w, got[f])
		}
	}
}

// waitFiles polls /tmp/r-vlan1 and /tmp/r-eth1 until each has a line
// matching pattern, and returns their contents.
func waitFiles(t *testing.T, vm *VM, pattern string, timeout time.Duration) map[string]string {
	t.Helper()
	re := regexp.MustCompile(pattern)
	deadline := time.Now().Add(timeout)
	got := map[string]string{}
	for {
		done := true
		for _, f := range []string{"/tmp/r-vlan1", "/tmp/r-eth1"} {
			out, _, err := vm.Run("cat "+f, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			got[f] = out
			if !re.MatchString(out) {
				done = false
			}
		}
		if done {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %q within %v: %q", pattern, timeout, got)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// hasWord reports whether w occurs in s as a word.
func hasWord(s, w string) bool {
	return regexp.MustCompile(`(^|\W)` + regexp.QuoteMeta(w) + `(\W|$)`).MatchString(s)
}
