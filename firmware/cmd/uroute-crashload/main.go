// Command uroute-crashload is the crash test's workload (qemu-test,
// TestCrash; issue 9). It runs in a guest booted with uroute.datalog=, whose
// data disk sits behind dm-log-writes, and drives ifmgrd as routers' users
// do: several clients creating and destroying bridges and VLANs at once,
// profile reloads, and a NIC removed and found again (sysfs remove, PCI
// rescan). Every request it sends and every answer it gets is written into
// the write log itself as a dm-log-writes mark, so the host that replays
// the log knows, at every instant the power could have gone, which
// allocations had been confirmed and which requests were in flight.
//
// Marks are one word of '|'-separated fields (a mark cannot hold spaces):
//
//	p|CLONER|UNIT|IDENTITY       ifmgrd lists this allocation (profile or hardware)
//	q|CLIENT.SEQ|+|CLONER        create request about to be sent
//	c|CLIENT.SEQ|+|CLONER|UNIT|IDENTITY  create confirmed
//	q|CLIENT.SEQ|-|CLONER|UNIT   destroy request about to be sent
//	c|CLIENT.SEQ|-|CLONER|UNIT|IDENTITY  destroy confirmed
//	e|CLIENT.SEQ|WHAT            a request failed (the test fails on any)
//	r|N  reload N answered;  h|N  replug N done;  end  the workload is over
//
// A mark is sent only after the answer it records has been read, so the
// log holds every write the daemon made durable before answering ahead of
// that mark. Last it prints one line of JSON with its counts.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/uroute/uroute/firmware/devmapper"
	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"golang.org/x/sys/unix"
)

type config struct {
	socket, dm       string
	clients, ops     int
	live             int
	vlanParent       string
	reloads, replugs int
	replugMAC        string
	profileMin       int
	seed             int64
	settle           time.Duration
}

type summary struct {
	Clients  int   `json:"clients"`
	Creates  int   `json:"creates"`
	Destroys int   `json:"destroys"`
	Reloads  int   `json:"reloads"`
	Replugs  int   `json:"replugs"`
	Errors   int   `json:"errors"`
	Marks    int   `json:"marks"`
	Profile  int   `json:"profile"`
	Seed     int64 `json:"seed"`
	Millis   int64 `json:"ms"`
}

func main() {
	var c config
	flag.StringVar(&c.socket, "socket", api.DefaultSocket, "ifmgrd's socket")
	flag.StringVar(&c.dm, "dm", "datalog", "the log-writes device-mapper device to mark")
	flag.IntVar(&c.clients, "clients", 4, "concurrent clients")
	flag.IntVar(&c.ops, "ops", 50, "creates and destroys per client")
	flag.IntVar(&c.live, "live", 6, "most interfaces one client holds at once")
	flag.StringVar(&c.vlanParent, "vlan-dev", "eth1", "parent of the VLANs the clients create")
	flag.IntVar(&c.reloads, "reloads", 4, "profile reloads during the run")
	flag.IntVar(&c.replugs, "replugs", 2, "times the NIC with -replug-mac is removed and found again")
	flag.StringVar(&c.replugMAC, "replug-mac", "", "MAC of the NIC to replug (none: no replugs)")
	flag.IntVar(&c.profileMin, "profile-min", 1, "wait until ifmgrd lists at least this many profile interfaces up")
	flag.Int64Var(&c.seed, "seed", 1, "random seed")
	flag.DurationVar(&c.settle, "settle", 3*time.Second, "wait after the last mark for the log to be written")
	flag.Parse()
	s, err := run(c)
	if s != nil {
		b, _ := json.Marshal(s)
		fmt.Println(string(b))
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "crashload: %v\n", err)
		os.Exit(1)
	}
}

// marker sends marks and counts them.
type marker struct {
	dm string
	mu sync.Mutex
	n  int
}

func (m *marker) mark(fields ...string) error {
	text := strings.Join(fields, "|")
	text = strings.NewReplacer(" ", "_", "\t", "_", "\n", "_").Replace(text)
	if err := devmapper.Mark(m.dm, text); err != nil {
		return err
	}
	m.mu.Lock()
	m.n++
	m.mu.Unlock()
	return nil
}

func run(c config) (*summary, error) {
	start := time.Now()
	s := &summary{Clients: c.clients, Seed: c.seed}
	m := &marker{dm: c.dm}
	defer func() { s.Marks = m.n; s.Millis = time.Since(start).Milliseconds() }()

	admin, err := waitDaemon(c.socket, 60*time.Second)
	if err != nil {
		return s, err
	}
	defer admin.Close()
	n, err := waitProfile(admin, c.profileMin, 120*time.Second)
	if err != nil {
		return s, err
	}
	s.Profile = n
	if err := markList(admin, m); err != nil {
		return s, err
	}

	var mu sync.Mutex
	var errs []error
	fail := func(err error) {
		mu.Lock()
		errs = append(errs, err)
		s.Errors++
		mu.Unlock()
	}
	var wg sync.WaitGroup
	for i := 0; i < c.clients; i++ {
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			cr, de, err := client(c, id, m, fail)
			mu.Lock()
			s.Creates += cr
			s.Destroys += de
			mu.Unlock()
			if err != nil {
				fail(fmt.Errorf("client %d: %w", id, err))
			}
		}(i)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		r, h, err := chaos(c, m)
		mu.Lock()
		s.Reloads, s.Replugs = r, h
		mu.Unlock()
		if err != nil {
			fail(err)
		}
	}()
	wg.Wait()

	// Whatever ifmgrd allocated for hardware meanwhile is listed again, on
	// a new connection: the daemon drops one that sat idle this long.
	if final, err := api.Dial(c.socket); err != nil {
		fail(err)
	} else {
		if err := markList(final, m); err != nil {
			fail(err)
		}
		final.Close()
	}
	if err := m.mark("end"); err != nil {
		fail(err)
	}
	unix.Sync()
	time.Sleep(c.settle)
	return s, errors.Join(errs...)
}

func waitDaemon(socket string, timeout time.Duration) (*api.Client, error) {
	deadline := time.Now().Add(timeout)
	for {
		cl, err := api.Dial(socket)
		if err == nil {
			return cl, nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// waitProfile waits until ifmgrd lists at least min interfaces made by the
// board profile, all up.
func waitProfile(cl *api.Client, min int, timeout time.Duration) (int, error) {
	deadline := time.Now().Add(timeout)
	for {
		list, err := cl.List()
		n, up := 0, true
		for _, in := range list {
			if strings.Contains(in.Identity, "rule=") {
				n++
				up = up && in.State == "up"
			}
		}
		if err == nil && n >= min && up {
			return n, nil
		}
		if time.Now().After(deadline) {
			return n, fmt.Errorf("profile not converged after %v: %d interfaces (want %d, all up), err %v", timeout, n, min, err)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// markList marks every allocation ifmgrd lists that no client made.
func markList(cl *api.Client, m *marker) error {
	list, err := cl.List()
	if err != nil {
		return fmt.Errorf("list: %w", err)
	}
	for _, in := range list {
		if !strings.Contains(in.Identity, "rule=") {
			continue
		}
		if err := m.mark("p", in.Cloner, fmt.Sprint(in.Unit), in.Identity); err != nil {
			return err
		}
	}
	return nil
}

// client creates and destroys interfaces over its own connection: a
// bridge or a VLAN on the shared parent (from a VID range of its own),
// holding at most c.live at once, and destroys what it still holds at the
// end.
func client(c config, id int, m *marker, fail func(error)) (creates, destroys int, err error) {
	rng := rand.New(rand.NewSource(c.seed*1000 + int64(id)))
	cl, err := api.Dial(c.socket)
	if err != nil {
		return 0, 0, err
	}
	defer cl.Close()
	var live []ifmgr.Info
	vids := map[int]bool{}
	seq := 0
	tag := func() string { seq++; return fmt.Sprintf("%d.%d", id, seq) }
	create := func() error {
		t := tag()
		name, dev, vid := "bridge", "", 0
		if rng.Intn(3) == 0 {
			name, dev = "vlan", c.vlanParent
			for vid == 0 || vids[vid] {
				vid = 100 + id*100 + rng.Intn(100)
			}
		}
		cloner := name
		if err := m.mark("q", t, "+", cloner); err != nil {
			return err
		}
		in, err := cl.Create(name, dev, vid)
		if err != nil {
			fail(fmt.Errorf("create %s (%s): %w", name, t, err))
			return m.mark("e", t, "create")
		}
		if err := m.mark("c", t, "+", in.Cloner, fmt.Sprint(in.Unit), in.Identity); err != nil {
			return err
		}
		if vid != 0 {
			vids[vid] = true
		}
		in.VID = uint16(vid)
		live = append(live, in)
		creates++
		return nil
	}
	destroy := func(i int) error {
		in := live[i]
		t := tag()
		if err := m.mark("q", t, "-", in.Cloner, fmt.Sprint(in.Unit)); err != nil {
			return err
		}
		if err := cl.Destroy(in.Name); err != nil {
			fail(fmt.Errorf("destroy %s (%s): %w", in.Name, t, err))
			return m.mark("e", t, "destroy")
		}
		if err := m.mark("c", t, "-", in.Cloner, fmt.Sprint(in.Unit), in.Identity); err != nil {
			return err
		}
		delete(vids, int(in.VID))
		live = append(live[:i], live[i+1:]...)
		destroys++
		return nil
	}
	for op := 0; op < c.ops; op++ {
		var err error
		if len(live) == 0 || (len(live) < c.live && rng.Intn(5) < 3) {
			err = create()
		} else {
			err = destroy(rng.Intn(len(live)))
		}
		if err != nil {
			return creates, destroys, err
		}
	}
	// Half of what is left stays: the log then ends with live allocations.
	for len(live) > c.live/2 {
		if err := destroy(len(live) - 1); err != nil {
			return creates, destroys, err
		}
	}
	return creates, destroys, nil
}

// chaos reloads the profile and replugs a NIC while the clients run.
func chaos(c config, m *marker) (reloads, replugs int, err error) {
	rng := rand.New(rand.NewSource(c.seed))
	steps := make([]bool, 0, c.reloads+c.replugs) // true: replug
	for i := 0; i < c.reloads; i++ {
		steps = append(steps, false)
	}
	if c.replugMAC != "" {
		for i := 0; i < c.replugs; i++ {
			steps = append(steps, true)
		}
	}
	rng.Shuffle(len(steps), func(i, j int) { steps[i], steps[j] = steps[j], steps[i] })
	for _, replug := range steps {
		time.Sleep(time.Duration(200+rng.Intn(1500)) * time.Millisecond)
		if !replug {
			// A connection per reload: ifmgrd drops one idle for 30 s,
			// and a replug may take a while.
			cl, err := api.Dial(c.socket)
			if err != nil {
				return reloads, replugs, err
			}
			_, err = cl.Reload(false)
			cl.Close()
			if err != nil {
				return reloads, replugs, fmt.Errorf("reload: %w", err)
			}
			reloads++
			if err := m.mark("r", fmt.Sprint(reloads)); err != nil {
				return reloads, replugs, err
			}
			continue
		}
		if err := replugNIC(c.replugMAC, 30*time.Second); err != nil {
			return reloads, replugs, err
		}
		replugs++
		if err := m.mark("h", fmt.Sprint(replugs)); err != nil {
			return reloads, replugs, err
		}
	}
	return reloads, replugs, nil
}

// replugNIC removes the PCI function of the NIC with mac and rescans the
// bus, as the lifecycle test does on machines without PCI hot-plug: to
// ifmgrd the same link events as an unplug and a plug.
func replugNIC(mac string, timeout time.Duration) error {
	dev, err := netdevByMAC(mac)
	if err != nil {
		return err
	}
	// The net device's "device" is the virtio device; its parent is the
	// PCI function, which is what goes away.
	virtio, err := filepath.EvalSymlinks(filepath.Join("/sys/class/net", dev, "device"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(virtio), "remove"), []byte("1"), 0); err != nil {
		return fmt.Errorf("remove %s: %w", dev, err)
	}
	deadline := time.Now().Add(timeout)
	for {
		if _, err := netdevByMAC(mac); err != nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s (%s) still there %v after its removal", dev, mac, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(500 * time.Millisecond)
	if err := os.WriteFile("/sys/bus/pci/rescan", []byte("1"), 0); err != nil {
		return fmt.Errorf("PCI rescan: %w", err)
	}
	for {
		if _, err := netdevByMAC(mac); err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("NIC %s not back %v after the PCI rescan", mac, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func netdevByMAC(mac string) (string, error) {
	dirs, err := os.ReadDir("/sys/class/net")
	if err != nil {
		return "", err
	}
	for _, d := range dirs {
		b, err := os.ReadFile(filepath.Join("/sys/class/net", d.Name(), "address"))
		if err == nil && strings.TrimSpace(string(b)) == mac {
			return d.Name(), nil
		}
	}
	return "", fmt.Errorf("no network device has MAC %s", mac)
}
