package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr/kernel"
)

// TestEventFloodTinyBuffer: more than 10,000 link events while the
// daemon's watcher has the smallest receive buffer the kernel grants
// (SO_RCVBUFFORCE of 1 byte: 2304), so it overruns (ENOBUFS) again and
// again, while clients allocate. The daemon must resync, serve every
// client, and converge: each port of the profile in its own bridge, no
// name twice, DB and kernel the same set. The flood is counted by a
// watcher of the test's own with a 64 MiB buffer.
func TestEventFloodTinyBuffer(t *testing.T) {
	e := newEnv(t)
	e.writeProfile(`
board = "flood"
[[port]]
name = "fl"
match.name = "fl*"
bridge = "fl"
[[bridge]]
name = "fl"
per_port = true
`)
	e.watch = 1
	e.start()
	counter, err := kernel.Watch(kernel.WatchOptions{ReadBuffer: 64 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var events, lost int
	counted := make(chan struct{})
	go func() {
		defer close(counted)
		for {
			evs, err := counter.Receive()
			if err != nil {
				return
			}
			for _, ev := range evs {
				if ev.Type == kernel.EventResync {
					lost++
				} else {
					events++
				}
			}
		}
	}()

	const ports, flaps = 300, 8
	var batch strings.Builder
	fg := e.foreignGroup()
	for i := range ports {
		fmt.Fprintf(&batch, "link add fl%d group %d type veth peer name flp%d group %d\n", i, fg, i, fg)
	}
	for range flaps {
		for i := range ports {
			fmt.Fprintf(&batch, "link set flp%d up\nlink set fl%d up\nlink set flp%d down\n", i, i, i)
		}
	}
	for i := 0; i < ports; i += 10 { // some ports go for good
		fmt.Fprintf(&batch, "link delete fl%d\n", i)
	}
	f := filepath.Join(e.dir, "flood.batch")
	if err := os.WriteFile(f, []byte(batch.String()), 0o644); err != nil {
		t.Fatal(err)
	}

	// Clients allocate during the flood.
	var wg sync.WaitGroup
	var mu sync.Mutex
	made := map[string]bool{}
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := e.client()
			for range 25 {
				in, err := c.Create("bridge", "", 0)
				if err != nil {
					t.Errorf("create during the flood: %v", err)
					return
				}
				mu.Lock()
				if made[in.Name] {
					t.Errorf("%s handed out twice", in.Name)
				}
				made[in.Name] = true
				mu.Unlock()
			}
		}()
	}
	if err := ip(t, "-force", "-batch", f); err != nil {
		t.Fatal(err)
	}
	wg.Wait()

	want := map[string]bool{}
	for i := range ports {
		if i%10 != 0 {
			want[fmt.Sprintf("fl%d", i)] = true
			want[fmt.Sprintf("flp%d", i)] = true
		}
	}
	converged := func() string {
		all := masters(t)
		seen := map[string]string{}
		for name := range want {
			m := all[name]
			if m == "" {
				return name + " in no bridge"
			}
			if other, dup := seen[m]; dup {
				return fmt.Sprintf("%s and %s share %s", name, other, m)
			}
			seen[m] = name
		}
		return ""
	}
	deadline := time.Now().Add(5 * time.Minute)
	for bad := converged(); bad != ""; bad = converged() {
		if time.Now().After(deadline) {
			t.Fatalf("not converged after the flood: %s", bad)
		}
		time.Sleep(500 * time.Millisecond)
	}
	counter.Close()
	<-counted
	st := e.status()
	t.Logf("flood: %d link events seen by a 64 MiB watcher (%d overruns there); daemon: resyncs %v, %d links, %d commits; %d bridges made by clients",
		events, lost, st.Resyncs, st.Links, st.Commits, len(made))
	if events < 10000 {
		t.Errorf("only %d events: not the 10k flood the test is for", events)
	}
	if st.Resyncs["lost-events"] == 0 {
		t.Errorf("the 2304-byte buffer never overran: the ENOBUFS path was not exercised")
	}
	list := e.checkAgree()
	bridges := 0
	for _, in := range list {
		if strings.HasPrefix(in.Identity, "rule=") && in.State != "absent" {
			bridges++
		}
	}
	if bridges != len(want) {
		t.Errorf("%d per-port bridges present, want %d", bridges, len(want))
	}
	e.checkDBMatchesKernel()
}
