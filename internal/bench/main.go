// Command bench (scripts/bench) measures ifmgrd against what router firmware
// does today, side by side in one run: `ip -batch` (the kernel's own limit
// over one netlink socket), one `ip` process per operation (shell scripts),
// and systemd-networkd. Every contender works in a fresh network namespace
// with the same ports made first; contenders alternate A B A B, and before
// each measurement the bench waits until the previous namespace's teardown
// has released the RTNL lock. It prints a table and writes a JSON file.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type config struct {
	Ns       []int
	TearNs   []int // teardown is slow in the kernel (an RCU grace period per link): its own counts
	Reps     int
	Events   int
	Bin      string // ifmgrd, ifctl, ifmgrd-debug
	Out      string
	Work     string
	Sections map[string]bool
	Networkd string
	SlowMax  int // one-ip-per-op and networkd only up to this N
	// EventPorts, EventFlaps: the events section's port count and flaps.
	EventPorts int
	EventFlaps int
	// HeapProfiles: a directory for heap profiles of the footprint's
	// measurements ("" for none): ifmgrd-debug runs instead of ifmgrd and
	// writes one right after each RSS reading.
	HeapProfiles string
	// RSSOnly: the footprint section measures memory only, not binaries.
	RSSOnly bool
	// ProfilePorts: the port counts of the footprint's profile-driven
	// readings (nil: half the managed count and the managed count).
	ProfilePorts []int
	// NoSocketRSS: the footprint skips the idle and socket readings (for
	// iterating on the profile case alone).
	NoSocketRSS bool
	// PerfDir: a directory for a system-wide perf profile of each timed
	// run of the bringup and create sections ("" for none).
	PerfDir string
}

// Result is one measured figure.
type Result struct {
	Section   string    `json:"section"`
	Contender string    `json:"contender"`
	N         int       `json:"n"`
	Seconds   []float64 `json:"seconds,omitempty"` // one per repetition
	Median    float64   `json:"median_s,omitempty"`
	Ratio     float64   `json:"ratio_to_baseline,omitempty"`
	Baseline  string    `json:"baseline,omitempty"`
	Extra     any       `json:"extra,omitempty"`
}

// Report is the JSON file.
type Report struct {
	Command   string            `json:"command"`
	Date      string            `json:"date"`
	Machine   map[string]string `json:"machine"`
	Results   []Result          `json:"results"`
	Notes     []string          `json:"notes"`
	Profile   string            `json:"cpu_profile_top,omitempty"`
	GoBench   string            `json:"go_bench,omitempty"`
	Latency   []Latency         `json:"event_latency,omitempty"`
	Footprint *Footprint        `json:"footprint,omitempty"`
	Where     []WhereRow        `json:"where_time_goes,omitempty"`
	Events    []EventRate       `json:"event_rate,omitempty"`
}

func main() {
	var c config
	var ns, tns, sections string
	flag.StringVar(&ns, "n", "100,1000", "interface counts, comma separated")
	flag.StringVar(&tns, "teardown-n", "100,300", "interface counts for the teardown section")
	flag.IntVar(&c.Reps, "reps", 2, "repetitions per contender (alternated A B A B); counts above 1000 run once")
	flag.IntVar(&c.Events, "events", 1000, "link-appears events for the latency figure")
	flag.StringVar(&c.Bin, "bin", "", "directory with ifmgrd, ifctl and ifmgrd-debug")
	flag.StringVar(&c.Out, "json", "bench.json", "JSON output file")
	flag.StringVar(&c.Work, "work", "", "scratch directory (DBs, profiles, networkd files)")
	flag.IntVar(&c.EventPorts, "event-ports", 800, "ports for the events section")
	flag.IntVar(&c.EventFlaps, "event-flaps", 400, "carrier and admin flaps for the events section")
	flag.StringVar(&sections, "only", "bringup,create,teardown,latency,where,footprint,events", "sections to run")
	flag.StringVar(&c.Networkd, "networkd", "/lib/systemd/systemd-networkd", "systemd-networkd binary (\"\" to skip)")
	flag.IntVar(&c.SlowMax, "slow-max", 1000000, "run one-ip-per-op and networkd only for N up to this")
	flag.StringVar(&c.HeapProfiles, "heap-profiles", "", "footprint: run ifmgrd-debug and write a heap profile per RSS reading into this directory")
	flag.BoolVar(&c.RSSOnly, "rss-only", false, "footprint: measure memory only (skip building the binaries for every architecture)")
	profilePorts := flag.String("profile-ports", "", "footprint: port counts of the profile-driven RSS readings (default 2000,4000)")
	flag.BoolVar(&c.NoSocketRSS, "no-socket-rss", false, "footprint: skip the idle and socket RSS readings")
	flag.StringVar(&c.PerfDir, "perf-dir", "", "bringup, create: write a system-wide perf record -a -g of each timed run into this directory (diagnostic: perf's cost is in the times; needs linux-perf)")
	nsPrefix := flag.String("ns-prefix", "ubench", "prefix of the bench's network namespace names")
	flag.Parse()
	runNS, peersNS, probeNS = *nsPrefix+"-run", *nsPrefix+"-peers", *nsPrefix+"-probe"
	c.Ns, c.TearNs = counts("-n", ns), counts("-teardown-n", tns)
	if *profilePorts != "" {
		c.ProfilePorts = counts("-profile-ports", *profilePorts)
	}
	c.Sections = map[string]bool{}
	for _, s := range strings.Split(sections, ",") {
		c.Sections[strings.TrimSpace(s)] = true
	}
	if c.HeapProfiles != "" {
		if err := os.MkdirAll(c.HeapProfiles, 0o755); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
	}
	if c.PerfDir != "" {
		if err := os.MkdirAll(c.PerfDir, 0o755); err != nil {
			fatal(err)
		}
	}
	if c.Work == "" {
		d, err := os.MkdirTemp("", "uroute-bench.")
		if err != nil {
			fatal(err)
		}
		defer os.RemoveAll(d)
		c.Work = d
	}
	if c.Bin == "" {
		fatal(fmt.Errorf("-bin is required (scripts/bench builds it)"))
	}
	rep := &Report{Command: strings.Join(os.Args, " "), Date: time.Now().UTC().Format(time.RFC3339), Machine: machine()}
	save := func() {
		data, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(c.Out, append(data, '\n'), 0o644); err != nil {
			fatal(err)
		}
	}
	b, err := newBench(c, rep)
	if err != nil {
		fatal(err)
	}
	b.save = save
	// Interrupted, the bench still removes its namespaces.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	go func() {
		<-sig
		b.close()
		os.Exit(130)
	}()
	err = b.run()
	b.close()
	if err != nil {
		fatal(err)
	}
	printTable(os.Stdout, rep)
	save()
	fmt.Printf("\nJSON: %s\n", c.Out)
}

func counts(flagName, list string) []int {
	var ns []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n <= 0 {
			fatal(fmt.Errorf("%s: bad count %q", flagName, s))
		}
		ns = append(ns, n)
	}
	return ns
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bench:", err)
	os.Exit(1)
}

func machine() map[string]string {
	m := map[string]string{"cpus": strconv.Itoa(runtime.NumCPU()), "go": runtime.Version()}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		m["loadavg_at_start"] = strings.Join(strings.Fields(string(b))[:3], " ")
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m["kernel"] = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m["cpu"] = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		m["mem"] = strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0])
	}
	if h, err := os.Hostname(); err == nil {
		m["host"] = h
	}
	return m
}

func (c config) path(name string) string { return filepath.Join(c.Work, name) }
