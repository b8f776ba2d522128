package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/uroute/uroute/internal/benchkit"
)

// Footprint is ifmgr's cost in flash and memory.
type Footprint struct {
	// Binaries: stripped sizes (bytes) by architecture and command, each
	// built alone (-trimpath -ldflags '-s -w', as Buildroot's package
	// does); the u-root image has them as commands of one busybox binary
	// instead, measured by scripts/image-sizes.sh.
	Binaries map[string]map[string]int64 `json:"binaries"`
	RSSIdle  int64                       `json:"rss_idle_bytes"`
	Managed  int                         `json:"managed"`
	RSSAt    int64                       `json:"rss_managed_bytes"`
	DBEmpty  int64                       `json:"db_empty_bytes"`
	DBAt     int64                       `json:"db_managed_bytes"`
	DBPerRec float64                     `json:"db_bytes_per_record"`
	// Profiles: ifmgrd started with the per-port profile on Ports veth
	// ports, once every port is in a bridge of its own (Ports bridges made
	// and Ports ports joined, 2*Ports interfaces): the planner's graph and
	// last plan and the link table at that size, which the socket case has
	// not. Measured at Managed/2 ports (Managed interfaces, the target's
	// count) and at Managed ports.
	Profiles []ProfileRSS `json:"profiles"`
	// The same three readings split into anonymous pages (heap, stacks,
	// runtime) and file pages (the binary, the DB's mmap).
	RSSIdleParts benchkit.RSS `json:"rss_idle_parts"`
	RSSAtParts   benchkit.RSS `json:"rss_managed_parts"`
	// SettledAt: seconds from the last create's answer until ifmgrd was
	// idle and its RSS was read.
	SettledAt float64 `json:"settled_managed_s"`
	// RSSBinary: how the ifmgrd whose RSS is read was built.
	RSSBinary string `json:"rss_binary"`
}

// ProfileRSS is one profile-driven RSS reading (Footprint.Profiles).
type ProfileRSS struct {
	Ports int          `json:"ports"`
	RSS   benchkit.RSS `json:"rss"`
	// Settled: seconds from the goal (every port in its bridge, all up)
	// until ifmgrd was idle and its RSS was read.
	Settled float64 `json:"settled_s"`
}

var arches = []struct{ name, goarch, goarm, gomips string }{
	{"amd64", "amd64", "", ""}, {"arm64", "arm64", "", ""}, {"armv7", "arm", "7", ""}, {"mipsle", "mipsle", "", "softfloat"},
}

func (b *bench) footprint() error {
	fp := &Footprint{Binaries: map[string]map[string]int64{}, Managed: 4000}
	for _, a := range arches {
		if b.c.RSSOnly {
			break
		}
		fp.Binaries[a.name] = map[string]int64{}
		for _, cmd := range []string{"ifmgrd", "ifctl", "uinit"} {
			out := b.c.path(fmt.Sprintf("size-%s-%s", a.name, cmd))
			build := exec.Command("go", append(shippedBuild, "-o", out, "./firmware/cmd/"+cmd)...)
			build.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+a.goarch, "GOARM="+a.goarm, "GOMIPS="+a.gomips)
			if o, err := build.CombinedOutput(); err != nil {
				return fmt.Errorf("build %s for %s: %v: %s", cmd, a.name, err, o)
			}
			st, err := os.Stat(out)
			if err != nil {
				return err
			}
			fp.Binaries[a.name][cmd] = st.Size()
			os.Remove(out)
		}
	}

	if err := b.buildShipped(); err != nil {
		return err
	}
	fp.RSSBinary = "CGO_ENABLED=0 go " + strings.Join(shippedBuild, " ") + " (as the image builds it)"
	var err error
	if !b.c.NoSocketRSS {
		err = b.inFreshNS(fp.Managed, func(r *runCtx) error { return b.memory(r, fp) })
	}
	ports := b.c.ProfilePorts
	if ports == nil {
		ports = []int{fp.Managed / 2, fp.Managed}
	}
	for _, ports := range ports {
		if err == nil {
			err = b.inFreshNS(ports, func(r *runCtx) error { return b.profileMemory(r, fp) })
		}
	}
	b.rep.Footprint = fp
	return err
}

// inFreshNS runs one daemon measurement over n links in a namespace of its
// own, and tears it all down after: the daemon, the watcher, the DB, the
// namespace and the peers the run made, waiting for the RTNL to be quiet.
func (b *bench) inFreshNS(n int, run func(*runCtx) error) error {
	b.seq++
	ns, err := benchkit.NewNS(runNS)
	if err != nil {
		return err
	}
	r := &runCtx{n: n, ns: ns, sock: b.c.path(fmt.Sprintf("ifmgr-%d.sock", b.seq)), db: b.c.path(fmt.Sprintf("ifmgr-%d.db", b.seq))}
	defer os.Remove(r.db)
	err = run(r)
	stopDaemon(r)
	if r.w != nil {
		r.w.Close()
	}
	ns.Delete()
	if serr := b.settle(r.peers); err == nil {
		err = serr
	}
	return err
}

// profileMemory: ifmgrd with the per-port profile over fp.Managed ports, in
// a namespace of its own, RSS read once the kernel shows every port in its
// bridge and ifmgrd has settled (settledRSS).
func (b *bench) profileMemory(r *runCtx, fp *Footprint) error {
	var err error
	if r.w, err = benchkit.NewWatch(r.ns); err != nil {
		return err
	}
	if err := makePorts(r); err != nil {
		return err
	}
	prof, err := b.profilePath()
	if err != nil {
		return err
	}
	if _, err := timed(r, benchkit.BridgedPorts("lan", r.n), func() error {
		bin, pre := b.footprintDaemon("profile")
		return b.startDaemon(r, bin, pre, "--config", prof)
	}); err != nil {
		return err
	}
	m := ProfileRSS{Ports: r.n}
	if m.RSS, m.Settled, err = settledRSS(r.daemon.Process.Pid); err != nil {
		return err
	}
	fp.Profiles = append(fp.Profiles, m)
	return b.heapProfile(r, "profile", fmt.Sprintf("profile-%d", r.n))
}

// settledRSS reads pid's RSS once its work is over: after its CPU time has
// stood still for idleFor, and then for another trimmer tick and idleFor
// (ifmgrd gives memory back on the first quiet tick after a burst, which
// is CPU time again). After a bring-up of thousands of links the kernel goes
// on sending news of them (IPv6 setup of every link) for a minute or more:
// a reading a fixed pause after the goal caught ifmgrd still at work. It
// returns how long the settling took.
func settledRSS(pid int) (benchkit.RSS, float64, error) {
	t0 := time.Now()
	for range 2 {
		if _, err := idle(pid, time.Now(), 5*time.Minute); err != nil {
			return benchkit.RSS{}, 0, err
		}
		time.Sleep(1100 * time.Millisecond) // one trimmer tick (firmware/daemon's trimEvery)
	}
	rss, err := benchkit.ProcRSS(pid)
	return rss, time.Since(t0).Seconds(), err
}

// shippedBuild is how the router image builds ifmgrd
// (buildroot/package/uroute/uroute.mk, scripts/build-image.sh): pure Go,
// static, stripped. The RSS is measured on that binary, not on the bench's
// own build (cgo, so dynamically linked: libc and ld.so add some 1.3 MB of
// file pages and their own anonymous memory that no router has).
var shippedBuild = []string{"build", "-trimpath", "-ldflags=-s -w -buildid="}

// buildShipped builds ifmgrd, and ifmgrd-debug when heap profiles are
// asked for, for this host as the image builds them (shippedBuild).
func (b *bench) buildShipped() error {
	cmds := map[string]string{"ifmgrd": "./firmware/cmd/ifmgrd"}
	if b.c.HeapProfiles != "" {
		cmds["ifmgrd-debug"] = "./internal/ifmgrd-debug"
	}
	for name, pkg := range cmds {
		build := exec.Command("go", append(shippedBuild, "-o", b.c.path("shipped-"+name), pkg)...)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if o, err := build.CombinedOutput(); err != nil {
			return fmt.Errorf("build %s as shipped: %v: %s", name, err, o)
		}
	}
	return nil
}

// footprintDaemon is the daemon binary of a footprint measurement and the
// flags before ifmgrd's: ifmgrd, or ifmgrd-debug writing heap profiles of
// measurement name on SIGUSR1 when -heap-profiles asks for them.
func (b *bench) footprintDaemon(name string) (string, []string) {
	if b.c.HeapProfiles == "" {
		return b.c.path("shipped-ifmgrd"), nil
	}
	return b.c.path("shipped-ifmgrd-debug"), []string{"-memprofile", b.heapPath(name), "-memprofile-after", "0",
		"-peak-profile", b.heapPath(name) + ".peak", "--"}
}

func (b *bench) heapPath(name string) string {
	return filepath.Join(b.c.HeapProfiles, "heap-"+name+".pprof")
}

// heapProfile has the daemon of measurement name write its heap profile
// (after the RSS reading: the profile collects garbage first) and keeps it
// as heap-<as>.pprof; nothing without -heap-profiles.
func (b *bench) heapProfile(r *runCtx, name, as string) error {
	if b.c.HeapProfiles == "" {
		return nil
	}
	path := b.heapPath(name)
	os.Remove(path)
	// Where the RSS is (anonymous or file pages) before the profile's GC.
	for f, suffix := range map[string]string{"smaps_rollup": ".smaps", "smaps": ".smaps-full"} {
		if smaps, err := os.ReadFile(fmt.Sprintf("/proc/%d/%s", r.daemon.Process.Pid, f)); err == nil {
			os.WriteFile(b.heapPath(as)+suffix, smaps, 0o644)
		}
	}
	if err := r.daemon.Process.Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			if as == name {
				return nil
			}
			os.Rename(path+".memstats", b.heapPath(as)+".memstats")
			os.Rename(path+".peak", b.heapPath(as)+".peak")
			return os.Rename(path, b.heapPath(as))
		}
	}
	return fmt.Errorf("no heap profile %s after 30 s", path)
}

// memory: the real ifmgrd, idle with an empty DB, then managing
// fp.Managed bridges made over its socket. RSS is read once ifmgrd has
// settled after the work (settledRSS).
func (b *bench) memory(r *runCtx, fp *Footprint) error {
	var err error
	if r.w, err = benchkit.NewWatch(r.ns); err != nil {
		return err
	}
	bin, pre := b.footprintDaemon("socket")
	if err := b.startDaemon(r, bin, pre); err != nil {
		return err
	}
	if err := waitSocket(r.sock, time.Minute); err != nil {
		return err
	}
	pid := r.daemon.Process.Pid
	if fp.RSSIdleParts, _, err = settledRSS(pid); err != nil {
		return err
	}
	fp.RSSIdle = fp.RSSIdleParts.Total
	if err := b.heapProfile(r, "socket", "idle"); err != nil {
		return err
	}
	if st, err := os.Stat(r.db); err == nil {
		fp.DBEmpty = st.Size()
	}
	if err := createOverSocket(r.sock, fp.Managed, 16); err != nil {
		return err
	}
	if fp.RSSAtParts, fp.SettledAt, err = settledRSS(pid); err != nil {
		return err
	}
	fp.RSSAt = fp.RSSAtParts.Total
	if err := b.heapProfile(r, "socket", "socket"); err != nil {
		return err
	}
	if st, err := os.Stat(r.db); err == nil {
		fp.DBAt = st.Size()
	}
	fp.DBPerRec = float64(fp.DBAt-fp.DBEmpty) / float64(fp.Managed)
	return nil
}
