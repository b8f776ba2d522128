package qemutest

// TestCrash checks ifmgr's durability promise at every instant the power
// could go, the way file system developers do it (xfstests generic/482;
// issue 9, section 1): the guest's ext4 data disk sits behind the kernel's
// dm-log-writes target (uinit's uroute.datalog=/dev/vdb), which logs every
// write with its FLUSH/FUA flags to a second disk; uroute-crashload drives
// ifmgrd (concurrent clients creating and destroying bridges and VLANs,
// profile reloads, a NIC replugged) and puts a mark in that log for every
// request it sends and every answer it gets. On the host the log is
// replayed onto the disk's initial image (qemu-test/logwrites) up to every
// FLUSH, FUA and mark, and at random subsets (some torn) of the writes not
// yet flushed between two flushes. Each crash state is checked as the
// router would boot it:
//
//   - e2fsck -fy replays the ext4 journal as a mount does (and would report
//     any damage beyond what the journal repairs);
//   - debugfs copies /uroute/ifmgr.db out without mounting;
//   - persist.Open, the daemon's own open and recovery path, opens it (a
//     file it finds damaged is moved aside and replaced by an empty DB,
//     as ifmgrd then rebuilds from the kernel: counted as "rebuilt");
//   - every allocation confirmed before the cut is there with its unit and
//     identity, unless its destroy had been sent; no record is there that
//     neither the profile nor a request sent before the cut explains (a
//     destroy confirmed before the cut must have removed its record); no two
//     records share an identity or an interface name.
//
// The short mode (CI) runs a few hundred requests and one random subset per
// flush interval; -crash.long runs far more of both.

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uroute/uroute/persist"
	"github.com/uroute/uroute/qemu-test/logwrites"
	"github.com/uroute/uroute/qemu-test/qemu"
)

var crashLong = flag.Bool("crash.long", false, "TestCrash: a long workload and more random crash states per flush")

// crashKernelCache is the kernel dir with dm-mod and dm-log-writes (they are
// not in a router's image): scripts/fetch-kernel.sh with EXTRA_MODULES.
const crashKernelCache = "kernel-amd64-dmlog"

// crashDBPath is ifmgrd's DB (uinit's dbPath) inside the data file system.
const crashDBPath = "/uroute/ifmgr.db"

type crashParams struct {
	clients, ops, subsets int
	reloads, replugs      int
	diskMB                int
}

func crashMode() crashParams {
	if *crashLong {
		return crashParams{clients: 6, ops: 250, subsets: 6, reloads: 10, replugs: 4, diskMB: 32}
	}
	return crashParams{clients: 4, ops: 100, subsets: 3, reloads: 3, replugs: 2, diskMB: 32}
}

func TestCrash(t *testing.T) {
	ran := false
	ForEachArch(t, func(t *testing.T, a Arch) {
		if a.Name != "amd64" {
			t.Skipf("crash states are replayed on amd64 only (the write log and its check do not depend on the CPU; each arch costs a full TCG run)")
		}
		ran = true
		crashTest(t, a)
	})
	if !ran && os.Getenv("UROUTE_QEMU") == "1" {
		t.Log("amd64 not selected: no crash states replayed")
	}
}

type crashSummary struct {
	Clients, Creates, Destroys, Reloads, Replugs, Errors, Marks, Profile int
	Seed                                                                 int64
	MS                                                                   int64 `json:"ms"`
}

func crashTest(t *testing.T, a Arch) {
	a.KernelCache = crashKernelCache
	if _, err := os.Stat(filepath.Join(a.KernelDir(), "modules", "dm-log-writes.ko")); err != nil && os.Getenv("UROUTE_QEMU") == "1" {
		t.Fatalf("no dm-log-writes in %s (%v); run EXTRA_MODULES=\"dm_mod dm_log_writes\" scripts/fetch-kernel.sh amd64 %s", a.KernelDir(), err, a.KernelDir())
	}
	kernel := Requirements(t, a)
	p := crashMode()
	initrd := buildCrashImage(t, a)
	dir := t.TempDir()
	data := filepath.Join(dir, "data.img")
	logDisk := filepath.Join(dir, "log.img")
	makeCrashDisk(t, data, p.diskMB)
	base, err := os.ReadFile(data)
	if err != nil {
		t.Fatal(err)
	}
	// The log disk is sparse; 1 GiB holds the long mode's log many times.
	if err := os.WriteFile(logDisk, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(logDisk, 1<<30); err != nil {
		t.Fatal(err)
	}

	seed := time.Now().UnixNano() % 1_000_000
	if s := os.Getenv("UROUTE_CRASH_SEED"); s != "" {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	t.Logf("seed %d (UROUTE_CRASH_SEED=%d reproduces the workload's choices and the random crash states)", seed, seed)

	vm := Boot(t, Config{Arch: a, Kernel: kernel, Initrd: initrd,
		NICs: []NIC{{0, mac0}, {0, mac1}, {2, macHot}}, Data: data, Devices: []qemu.Device{qemu.Disk{File: logDisk}},
		QMP: filepath.Join(dir, "qmp.sock"), Append: "uroute.datalog=/dev/vdb",
		Timeout: a.Scale(40 * time.Minute)})
	if _, err := vm.WaitShell(a.Scale(180 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(vm.Console(), "uinit: data: ok") {
		t.Fatalf("the data disk was not mounted behind dm-log-writes (no \"uinit: data: ok\")")
	}
	cmd := fmt.Sprintf("uroute-crashload -clients %d -ops %d -reloads %d -replugs %d -replug-mac %s -profile-min 5 -seed %d",
		p.clients, p.ops, p.reloads, p.replugs, macHot, seed)
	var sum crashSummary
	start := time.Now()
	if err := vm.RunJSON(cmd, &sum, a.Scale(30*time.Minute)); err != nil {
		t.Fatal(err)
	}
	t.Logf("workload: %d clients, %d creates, %d destroys, %d reloads, %d replugs, %d profile interfaces, %d marks, %d errors in %v",
		sum.Clients, sum.Creates, sum.Destroys, sum.Reloads, sum.Replugs, sum.Profile, sum.Marks, sum.Errors, time.Since(start).Round(time.Second))
	if sum.Errors != 0 {
		t.Fatalf("the workload saw %d failed requests (see the console)", sum.Errors)
	}
	vm.PowerCut()

	f, err := os.Open(logDisk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	l, err := logwrites.Parse(f, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	or, err := newCrashOracle(l)
	if err != nil {
		t.Fatal(err)
	}
	if or.marks != sum.Marks {
		t.Fatalf("the log has %d of the workload's %d marks", or.marks, sum.Marks)
	}
	if !or.ended {
		t.Fatal("the log does not reach the workload's end mark")
	}
	rep := replayCrashStates(t, l, base, or, p.subsets, rand.New(rand.NewSource(seed)), dir)
	t.Logf("log: %d entries (%d flush, %d FUA, %d marks), %d allocations confirmed; %d times an allocation was checked present where it had to be (up to %d records in a state; %d crash points before the DB file existed)",
		len(l.Entries), rep.flushes, rep.fuas, or.marks, len(or.allocs), rep.verified, rep.maxRecords, rep.noDB)
	t.Logf("crash states: %d replayed (%d at a flush/FUA/mark, %d random subsets of unflushed writes, %d of them torn), %d crash points checked; e2fsck fixed more than the journal in %d, DB rebuilt in %d; %d violations; replay took %v",
		rep.images, rep.prefix, rep.subsets, rep.torn, rep.checked, rep.fsckFixed, rep.rebuilt, len(rep.violations), rep.took.Round(100*time.Millisecond))
	for i, v := range rep.violations {
		if i == 50 {
			t.Errorf("... and %d more", len(rep.violations)-50)
			break
		}
		t.Error(v)
	}
	for _, n := range rep.notes {
		t.Log(n)
	}
}

// buildCrashImage is the image with the workload command added
// (build-image.sh's EXTRA_CMDS), cached by content like every image.
func buildCrashImage(t *testing.T, a Arch) string {
	t.Helper()
	return BuildImageVariant(t, a, Profile("qemu-vlan-hub"), qemu.Variant{Name: "crash", Env: []string{"EXTRA_CMDS=uroute-crashload"}})
}

// makeCrashDisk makes the ext4 data disk with everything initialised by
// mkfs (no lazy inode-table or journal init), so that the kernel's
// background initialisation writes do not fill the log.
func makeCrashDisk(t *testing.T, path string, sizeMB int) {
	t.Helper()
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, int64(sizeMB)<<20); err != nil {
		t.Fatal(err)
	}
	if b, err := exec.Command("mkfs.ext4", "-q", "-F", "-b", "4096",
		"-E", "lazy_itable_init=0,lazy_journal_init=0", path).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, b)
	}
}

// crashKey is a DB record's address.
type crashKey struct {
	cloner string
	unit   uint32
}

func (k crashKey) String() string { return fmt.Sprintf("%s/%d", k.cloner, k.unit) }

// crashAlloc is one allocation a client made, with the log positions of
// its marks (-1: never).
type crashAlloc struct {
	tag      string
	key      crashKey
	identity string
	reqC     int // create request marked
	confC    int // create answer marked
	reqD     int // destroy request marked
	confD    int // destroy answer marked
}

// crashOracle knows from the workload's marks what each crash state must
// and may hold.
type crashOracle struct {
	allocs  []*crashAlloc
	profile map[crashKey]string // identity ifmgrd listed for a key
	pFirst  map[crashKey]int    // first mark of that listing
	marks   int
	ended   bool
}

func newCrashOracle(l *logwrites.Log) (*crashOracle, error) {
	o := &crashOracle{profile: map[crashKey]string{}, pFirst: map[crashKey]int{}}
	reqCreate := map[string]int{}
	live := map[string]map[crashKey]*crashAlloc{} // client -> its allocations
	for _, e := range l.Entries {
		if e.Flags&logwrites.Mark == 0 {
			continue
		}
		f := strings.Split(e.Mark, "|")
		if f[0] == "dm-log-writes-end" {
			continue
		}
		o.marks++
		bad := func() error { return fmt.Errorf("entry %d: bad mark %q", e.Index, e.Mark) }
		key := func(cloner, unit string) (crashKey, error) {
			u, err := strconv.ParseUint(unit, 10, 32)
			if err != nil {
				return crashKey{}, bad()
			}
			return crashKey{cloner, uint32(u)}, nil
		}
		switch f[0] {
		case "end":
			o.ended = true
		case "r", "h":
		case "e":
			return nil, fmt.Errorf("entry %d: the workload marked a failed request: %q", e.Index, e.Mark)
		case "p":
			if len(f) != 4 {
				return nil, bad()
			}
			k, err := key(f[1], f[2])
			if err != nil {
				return nil, err
			}
			if id, ok := o.profile[k]; ok && id != f[3] {
				return nil, fmt.Errorf("entry %d: %v listed as %s and later as %s", e.Index, k, id, f[3])
			}
			if _, ok := o.profile[k]; !ok {
				o.profile[k], o.pFirst[k] = f[3], e.Index
			}
		case "q", "c":
			if len(f) < 4 {
				return nil, bad()
			}
			client, _, _ := strings.Cut(f[1], ".")
			if live[client] == nil {
				live[client] = map[crashKey]*crashAlloc{}
			}
			switch {
			case f[0] == "q" && f[2] == "+":
				reqCreate[f[1]] = e.Index
			case f[0] == "c" && f[2] == "+" && len(f) == 6:
				k, err := key(f[3], f[4])
				if err != nil {
					return nil, err
				}
				req, ok := reqCreate[f[1]]
				if !ok {
					return nil, fmt.Errorf("entry %d: create answer without its request: %q", e.Index, e.Mark)
				}
				a := &crashAlloc{tag: f[1], key: k, identity: f[5], reqC: req, confC: e.Index, reqD: -1, confD: -1}
				o.allocs = append(o.allocs, a)
				live[client][k] = a
			case f[0] == "q" && f[2] == "-" && len(f) == 5:
				k, err := key(f[3], f[4])
				if err != nil {
					return nil, err
				}
				a := live[client][k]
				if a == nil {
					return nil, fmt.Errorf("entry %d: destroy of %v that client %s does not hold", e.Index, k, client)
				}
				a.reqD = e.Index
			case f[0] == "c" && f[2] == "-" && len(f) == 6:
				k, err := key(f[3], f[4])
				if err != nil {
					return nil, err
				}
				a := live[client][k]
				if a == nil || a.reqD < 0 {
					return nil, fmt.Errorf("entry %d: destroy answer without its request: %q", e.Index, e.Mark)
				}
				a.confD = e.Index
				delete(live[client], k)
			default:
				return nil, bad()
			}
		default:
			return nil, bad()
		}
	}
	return o, nil
}

// check returns the violations of the records a crash state before entry
// cut holds.
func (o *crashOracle) check(cut int, recs []persist.Record) (v []string, verified int) {
	have := map[crashKey]persist.Record{}
	ids := map[string]crashKey{}
	names := map[string]crashKey{}
	for _, r := range recs {
		k := crashKey{r.Cloner, r.Unit}
		have[k] = r
		id := r.Identity.Key()
		if other, dup := ids[id]; dup {
			v = append(v, fmt.Sprintf("identity %s recorded for both %v and %v", id, other, k))
		}
		ids[id] = k
		if r.Identity.Name != "" {
			if other, dup := names[r.Identity.Name]; dup {
				v = append(v, fmt.Sprintf("name %s recorded for both %v and %v", r.Identity.Name, other, k))
			}
			names[r.Identity.Name] = k
		}
	}
	// Must be there.
	for k, id := range o.profile {
		if o.pFirst[k] >= cut {
			continue
		}
		verified++
		r, ok := have[k]
		switch {
		case !ok:
			v = append(v, fmt.Sprintf("lost %v (%s), listed by ifmgrd at entry %d", k, id, o.pFirst[k]))
		case r.Identity.Key() != id:
			v = append(v, fmt.Sprintf("%v holds %s, listed by ifmgrd as %s at entry %d", k, r.Identity.Key(), id, o.pFirst[k]))
		}
	}
	for _, a := range o.allocs {
		if a.confC >= cut || (a.reqD >= 0 && a.reqD < cut) {
			continue
		}
		verified++
		r, ok := have[a.key]
		switch {
		case !ok:
			v = append(v, fmt.Sprintf("lost %v (%s), confirmed to client %s at entry %d", a.key, a.identity, a.tag, a.confC))
		case r.Identity.Key() != a.identity:
			v = append(v, fmt.Sprintf("%v holds %s, confirmed to client %s as %s at entry %d", a.key, r.Identity.Key(), a.tag, a.identity, a.confC))
		}
	}
	// May be there.
	for k, r := range have {
		id := r.Identity.Key()
		if o.profile[k] == id {
			continue
		}
		explained := false
		var destroyed *crashAlloc
		for _, a := range o.allocs {
			if a.key != k || a.identity != id || a.reqC >= cut {
				continue
			}
			if a.confD < 0 || a.confD >= cut {
				explained = true
				break
			}
			destroyed = a
		}
		switch {
		case explained:
		case destroyed != nil:
			v = append(v, fmt.Sprintf("%v (%s) still recorded, its destroy confirmed to client %s at entry %d", k, id, destroyed.tag, destroyed.confD))
		default:
			v = append(v, fmt.Sprintf("%v (%s) recorded, but no request sent before the cut made it", k, id))
		}
	}
	return v, verified
}

// crashResult is what the router would find in one crash state.
type crashResult struct {
	fsckCode  int
	fsckFixed string // e2fsck's output when it repaired more than the journal
	absent    bool   // no DB file (ifmgrd creates an empty one)
	rebuilt   string // persist's reason for replacing the file, if it did
	records   []persist.Record
	failure   string // the state could not be examined at all
	subset    bool
}

type crashReport struct {
	images, prefix, subsets, torn, checked int
	flushes, fuas                          int
	fsckFixed, rebuilt                     int
	verified, maxRecords, noDB             int // allocations found where they had to be
	violations, notes                      []string
	took                                   time.Duration
}

// replayCrashStates walks the log, examines every distinct crash state on
// two workers (e2fsck, debugfs, persist.Open) and checks each crash point.
func replayCrashStates(t *testing.T, l *logwrites.Log, base []byte, or *crashOracle, subsets int, rng *rand.Rand, dir string) crashReport {
	start := time.Now()
	var rep crashReport
	for _, e := range l.Entries {
		if e.Flags&logwrites.Flush != 0 {
			rep.flushes++
		}
		if e.Flags&logwrites.FUA != 0 {
			rep.fuas++
		}
	}
	type job struct {
		s    logwrites.State
		path string
	}
	type point struct {
		id, cut int
	}
	var (
		mu      sync.Mutex
		results = map[int]*crashResult{}
		points  []point
	)
	jobs := make(chan job, 2)
	var wg sync.WaitGroup
	for w := 0; w < 2; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := range jobs {
				r := examineCrashState(j.path, filepath.Join(dir, fmt.Sprintf("w%d", w)))
				r.subset = j.s.Subset
				os.Remove(j.path)
				mu.Lock()
				results[j.s.ID] = r
				mu.Unlock()
			}
		}(w)
	}
	for w := 0; w < 2; w++ {
		if err := os.MkdirAll(filepath.Join(dir, fmt.Sprintf("w%d", w)), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	im := logwrites.NewImage(base)
	err := logwrites.Walk(l, im, logwrites.Options{SubsetsPerFlush: subsets, Rand: rng}, func(s logwrites.State, img *logwrites.Image) error {
		id := s.ID
		if s.SameAs >= 0 {
			id = s.SameAs
		} else {
			p := filepath.Join(dir, fmt.Sprintf("state-%d.img", s.ID))
			if err := img.WriteSparse(p); err != nil {
				return err
			}
			jobs <- job{s, p}
			rep.images++
			if s.Subset {
				rep.subsets++
				if s.Torn > 0 {
					rep.torn++
				}
			} else {
				rep.prefix++
			}
		}
		points = append(points, point{id, s.Cut})
		return nil
	})
	close(jobs)
	wg.Wait()
	if err != nil {
		t.Fatal(err)
	}
	for _, pt := range points {
		r := results[pt.id]
		rep.checked++
		if r.failure != "" {
			rep.violations = append(rep.violations, fmt.Sprintf("state %d (cut at entry %d): %s", pt.id, pt.cut, r.failure))
			continue
		}
		vs, n := or.check(pt.cut, r.records)
		rep.verified += n
		if len(r.records) > rep.maxRecords {
			rep.maxRecords = len(r.records)
		}
		if r.absent {
			rep.noDB++
		}
		for _, v := range vs {
			rep.violations = append(rep.violations, fmt.Sprintf("state %d (cut at entry %d, %s): %s", pt.id, pt.cut, r.describe(), v))
		}
	}
	ids := make([]int, 0, len(results))
	for id := range results {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	repairs := map[string]int{}
	for _, id := range ids {
		r := results[id]
		if r.fsckFixed != "" {
			rep.fsckFixed++
			for _, line := range strings.Split(r.fsckFixed, "\n") {
				repairs[line]++
			}
			if rep.fsckFixed <= 3 {
				rep.notes = append(rep.notes, fmt.Sprintf("state %d (%s): e2fsck exit %d repaired more than the journal:\n%s", id, r.describe(), r.fsckCode, r.fsckFixed))
			}
		}
		if r.rebuilt != "" {
			rep.rebuilt++
			if rep.rebuilt <= 5 {
				rep.notes = append(rep.notes, fmt.Sprintf("state %d (%s): persist found the DB damaged and would rebuild it: %s", id, r.describe(), r.rebuilt))
			}
		}
	}
	lines := make([]string, 0, len(repairs))
	for line := range repairs {
		lines = append(lines, line)
	}
	sort.Strings(lines)
	for _, line := range lines {
		rep.notes = append(rep.notes, fmt.Sprintf("e2fsck repair in %d states: %s", repairs[line], line))
	}
	rep.took = time.Since(start)
	return rep
}

func (r *crashResult) describe() string {
	s := "full replay"
	if r.subset {
		s = "random subset of unflushed writes"
	}
	if r.absent {
		s += ", no DB file"
	}
	if r.rebuilt != "" {
		s += ", DB rebuilt"
	}
	return s
}

// fsckRoutine are the lines of e2fsck -fy that a clean check or a journal
// replay prints; anything else is a repair. The superblock's free block and
// inode totals are among them: ext4 does not journal them (the kernel sums
// the group descriptors at mount), so after any unclean stop e2fsck -f
// "fixes" them, and e2fsck -p does so silently.
var fsckRoutine = []string{"e2fsck ", "Pass 1", "Pass 2", "Pass 3", "Pass 4", "Pass 5",
	"recovering journal", "Clearing orphaned inode", "***** FILE SYSTEM WAS MODIFIED *****",
	"Backing up journal inode block information", "Fix? yes"}

var fsckSummaryCount = regexp.MustCompile(`^Free (blocks|inodes) count wrong \(\d+, counted=\d+\)\.$`)

// examineCrashState does to the image what the router's next boot does:
// the journal replay of the mount (e2fsck -fy, which also checks that
// nothing else is wrong), then ifmgrd's persist.Open of its DB.
func examineCrashState(img, work string) *crashResult {
	r := &crashResult{}
	cmd := exec.Command("e2fsck", "-fy", img)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		r.failure = fmt.Sprintf("e2fsck: %v", err)
		return r
	}
	r.fsckCode = cmd.ProcessState.ExitCode()
	if r.fsckCode&^3 != 0 {
		r.failure = fmt.Sprintf("e2fsck exit %d: the file system is damaged beyond repair:\n%s", r.fsckCode, out)
		return r
	}
	var extra []string
	for _, line := range strings.Split(string(out), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.Contains(line, " files (") {
			continue
		}
		routine := fsckSummaryCount.MatchString(line)
		for _, p := range fsckRoutine {
			if strings.Contains(line, p) {
				routine = true
				break
			}
		}
		if !routine {
			extra = append(extra, line)
		}
	}
	if len(extra) > 0 {
		r.fsckFixed = strings.Join(extra, "\n")
	}
	db := filepath.Join(work, "ifmgr.db")
	for _, p := range append([]string{db, db + ".lock"}, globCorrupt(db)...) {
		os.Remove(p)
	}
	out, err = exec.Command("debugfs", "-R", "dump "+crashDBPath+" "+db, img).CombinedOutput()
	if err != nil {
		r.failure = fmt.Sprintf("debugfs: %v\n%s", err, out)
		return r
	}
	if bytes.Contains(out, []byte("File not found")) {
		r.absent = true
	} else if _, err := os.Stat(db); err != nil {
		r.failure = fmt.Sprintf("debugfs wrote no %s: %s", db, out)
		return r
	}
	store, rec, err := persist.Open(db, persist.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		r.failure = fmt.Sprintf("persist.Open: %v", err)
		return r
	}
	defer store.Close()
	if rec.Reason != nil {
		r.rebuilt = rec.Reason.Error()
	}
	r.records, err = store.Records()
	if err != nil {
		r.failure = fmt.Sprintf("persist Records: %v", err)
	}
	return r
}

func globCorrupt(db string) []string {
	m, _ := filepath.Glob(db + ".corrupt-*")
	return m
}
