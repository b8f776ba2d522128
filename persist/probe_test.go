package persist

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/uroute/uroute/internal/qemuuser"
	bolt "go.etcd.io/bbolt"
)

// rawOutcome is what bbolt on its own makes of a damaged file, worst first.
type rawOutcome string

const (
	rawCrash    rawOutcome = "crash"    // the whole process died (no recover can help)
	rawPanic    rawOutcome = "panic"    // a panic a recover on our goroutine caught
	rawError    rawOutcome = "error"    // an error value at some stage
	rawAccepted rawOutcome = "accepted" // open, walk and tx.Check all fine: bbolt cannot see it
)

// rawExpected is bbolt v1.4.3's behaviour on each damaged file (the
// outcomes each run may give), the evidence behind preflight.go and Open's
// schema checks: bbolt crashes the process on up to three of them (on its
// own tx.Check goroutine), panics on one more, and accepts the six whose
// damage is in our schema. The truncated file faults reading past its end
// either in Open (recovered) or on tx.Check's goroutine (a crash), as the
// pages beyond the end happen to be touched first: both happen. A change
// fails the test: after a bbolt upgrade, re-read preflight.go's reasoning
// against the new outcomes and update this table.
var rawExpected = map[string][]rawOutcome{
	"zero-length":         {rawAccepted},
	"truncated-half":      {rawCrash, rawPanic},
	"truncated-1-page":    {rawError},
	"random-16KiB":        {rawError},
	"bad-meta-checksums":  {rawError},
	"garbage-meta-page-0": {rawCrash},
	"bad-freelist":        {rawPanic},
	"garbage-units-leaf":  {rawCrash},
	"foreign-endian":      {rawError},
	"no-meta-bucket":      {rawAccepted},
	"no-schema-key":       {rawAccepted},
	"garbled-schema":      {rawAccepted},
	"schema-zero":         {rawAccepted},
	"no-units-bucket":     {rawAccepted},
}

// TestBboltRawBehaviour records what bbolt on its own (no preflight) does
// with each damaged file: error, recoverable panic, tx.Check failure, or a
// crash of the whole process, and checks it against rawExpected. It runs
// each file in a child process because some outcomes are crashes. The log
// (go test -v -run RawBehaviour; PROBE_DEBUG=1 adds the children's output)
// shows each stage. TestCorruptFileRecovered checks that Open survives
// every one of these files.
func TestBboltRawBehaviour(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns child processes")
	}
	fixture, _ := fixtureDB(t)
	valid := readFile(t, fixture)
	for _, tc := range corruptCases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "units.db")
			writeFile(t, path, tc.make(t, valid, path))
			// Through the emulator under qemu-user (no binfmt_misc needed).
			cmd := qemuuser.Command(os.Args[0], "-test.run=^TestBboltRawProbeChild$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), "PERSIST_PROBE="+path)
			out, err := cmd.CombinedOutput()
			if !strings.Contains(string(out), "PROBE open:") {
				t.Fatalf("probe did not run (%v):\n%s", err, out)
			}
			t.Logf("%-20s %s", tc.name, summarizeProbe(string(out), err))
			if os.Getenv("PROBE_DEBUG") != "" {
				t.Log(string(out))
			}
			want, ok := rawExpected[tc.name]
			if !ok {
				t.Fatalf("no expected outcome for %s: add it to rawExpected", tc.name)
			}
			if got := classifyProbe(string(out), err); !slices.Contains(want, got) {
				t.Errorf("bbolt alone now gives %q on %s, was one of %q: bbolt changed; re-check preflight.go against it and update rawExpected", got, tc.name, want)
			}
		})
	}
}

// classifyProbe reduces a child's report to its worst outcome.
func classifyProbe(out string, err error) rawOutcome {
	switch {
	case err != nil:
		return rawCrash
	case strings.Contains(out, ": PANIC"):
		return rawPanic
	case strings.Contains(out, ": error:"):
		return rawError
	}
	return rawAccepted
}

// summarizeProbe joins the child's stage lines and, if it died, why and
// on which goroutine.
func summarizeProbe(out string, err error) string {
	var stages []string
	for line := range strings.SplitSeq(out, "\n") {
		if rest, ok := strings.CutPrefix(line, "PROBE "); ok {
			stages = append(stages, rest)
		}
	}
	if err == nil {
		return strings.Join(stages, " | ")
	}
	why, where := "", ""
	for line := range strings.SplitSeq(out, "\n") {
		line = strings.TrimSpace(line)
		if why == "" && (strings.HasPrefix(line, "panic:") || strings.HasPrefix(line, "fatal error:") ||
			strings.HasPrefix(line, "[signal") || strings.HasPrefix(line, "runtime: goroutine stack")) {
			why = line
		}
		if where == "" && strings.HasPrefix(line, "created by go.etcd.io/bbolt") {
			where = " on bbolt's goroutine " + strings.TrimPrefix(line, "created by go.etcd.io/bbolt.")
		}
	}
	stages = append(stages, fmt.Sprintf("PROCESS CRASHED (%v)%s: %s", err, where, why))
	return strings.Join(stages, " | ")
}

// TestBboltRawProbeChild is the child side of TestBboltRawBehaviour.
func TestBboltRawProbeChild(t *testing.T) {
	path := os.Getenv("PERSIST_PROBE")
	if path == "" {
		t.Skip("child of TestBboltRawBehaviour")
	}
	probeRaw(path, func(stage, res string) {
		if len(res) > 160 {
			res = res[:160] + "..."
		}
		fmt.Printf("PROBE %s: %s\n", stage, res)
		os.Stdout.Sync()
	})
}

// probeRaw opens, walks and checks path with bbolt alone, reporting each
// stage before the next one starts, so a crash still shows how far it got.
// The order is Open's without preflight; tx.Check runs even after a failed
// walk to show what it would have done.
func probeRaw(path string, report func(stage, res string)) {
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	catch := func(fn func() error) (res string) {
		defer func() {
			if r := recover(); r != nil {
				res = fmt.Sprintf("PANIC (recovered): %v", r)
			}
		}()
		if err := fn(); err != nil {
			return "error: " + err.Error()
		}
		return "ok"
	}
	var db *bolt.DB
	st, _ := os.Stat(path)
	size := st.Size()
	open := catch(func() (err error) {
		db, err = bolt.Open(path, 0o600, &bolt.Options{
			Timeout: time.Second, InitialMmapSize: initialMmapSize, FreelistType: bolt.FreelistMapType,
		})
		return err
	})
	if size == 0 {
		open += " (bbolt initialised the empty file)"
	}
	report("open", open)
	if db == nil {
		return
	}
	report("walk", catch(func() error {
		return db.View(func(tx *bolt.Tx) error {
			return walk(tx.Cursor(), func(k, v []byte) {
				for range k {
				}
				for range v {
				}
			}, 0)
		})
	}))
	report("tx.Check", catch(func() error {
		return db.View(func(tx *bolt.Tx) error {
			var errs []error
			for err := range tx.Check() {
				errs = append(errs, err)
			}
			return errors.Join(errs...)
		})
	}))
}
