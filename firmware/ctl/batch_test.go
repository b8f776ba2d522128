package ctl

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
)

// fakeDaemon is a Backend and a Queuer that does each request when its
// answer is waited for (in request order, as the owner would): a create
// of "bad" fails as a taken unit; a chained request behind a failure is
// skipped; done records what was done.
type fakeDaemon struct {
	mu   sync.Mutex
	done []string
}

func (d *fakeDaemon) do(what string, chain *ifmgr.Chain, fail bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if chain.Failed() {
		return ifmgr.ErrSkipped
	}
	if fail {
		chain.Fail()
		return fmt.Errorf("unit 7: %w", ifmgr.ErrUnitExists)
	}
	d.done = append(d.done, what)
	return nil
}

func (d *fakeDaemon) QueueCreate(_ context.Context, req ifmgr.CreateRequest, chain *ifmgr.Chain) func() (ifmgr.Info, error) {
	return func() (ifmgr.Info, error) {
		err := d.do("create "+req.Name, chain, req.Name == "bad")
		return ifmgr.Info{Name: req.Name}, err
	}
}

func (d *fakeDaemon) QueueDestroy(_ context.Context, name string, chain *ifmgr.Chain) func() error {
	return func() error { return d.do("destroy "+name, chain, false) }
}

func (d *fakeDaemon) Create(ctx context.Context, req ifmgr.CreateRequest) (ifmgr.Info, error) {
	return d.QueueCreate(ctx, req, nil)()
}
func (d *fakeDaemon) Destroy(ctx context.Context, name string) error {
	return d.QueueDestroy(ctx, name, nil)()
}
func (d *fakeDaemon) List(context.Context) ([]ifmgr.Info, error) {
	return []ifmgr.Info{{Name: "bridge0", Kind: "bridge", Identity: "name=bridge0", State: "up"}}, nil
}
func (d *fakeDaemon) Status(context.Context) (ifmgr.Status, error) { return ifmgr.Status{}, nil }
func (d *fakeDaemon) Resync(context.Context) error                 { return nil }
func (d *fakeDaemon) Reload(context.Context, bool) ([]string, error) {
	return nil, nil
}

func (d *fakeDaemon) taken() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := strings.Join(d.done, ", ")
	d.done = nil
	return out
}

func serveFake(t *testing.T) (*fakeDaemon, string) {
	t.Helper()
	dir := t.TempDir()
	sock := filepath.Join(dir, "ctl.sock")
	ln, err := api.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	d := &fakeDaemon{}
	srv := &api.Server{Backend: d, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), AllowUID: func(uint32) bool { return true }, IdleTimeout: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, sock
}

func runBatchFile(t *testing.T, sock, script string, extra ...string) (stdout, stderr string, code int) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "cmds")
	if err := os.WriteFile(file, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	var o, e bytes.Buffer
	code = Main(append([]string{"--socket", sock, "-batch", file}, extra...), &o, &e)
	return o.String(), strings.ReplaceAll(e.String(), file, "FILE"), code
}

// The -batch contract: output in line order, as each command prints it;
// comments and blank lines skipped; a failed line reported with its line
// number, and, without -force, nothing after it done.
func TestBatchContract(t *testing.T) {
	d, sock := serveFake(t)

	out, errOut, code := runBatchFile(t, sock, "# set up\ncreate bridge0\n\n  create vlan --dev eth0 --vid 10\nlist\ndestroy bridge0\n")
	if code != 0 || errOut != "" {
		t.Fatalf("batch: exit %d, stderr %q", code, errOut)
	}
	if want := "bridge0\nvlan\nbridge0  bridge  0  name=bridge0  up\n"; out != want {
		t.Errorf("stdout %q, want %q", out, want)
	}
	if got := d.taken(); got != "create bridge0, create vlan, destroy bridge0" {
		t.Errorf("done: %s", got)
	}

	out, errOut, code = runBatchFile(t, sock, "create a\ncreate b\ncreate bad\ncreate c\ndestroy a\n")
	if code != 1 || out != "a\nb\n" || errOut != "ifctl: create bad: unit 7: unit already allocated\nCommand failed FILE:3\n" {
		t.Errorf("stop at first: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := d.taken(); got != "create a, create b" {
		t.Errorf("done after a failed line 3: %s (nothing after it may be done)", got)
	}

	out, errOut, code = runBatchFile(t, sock, "create a\ncreate bad\nfrob\ncreate c\n", "-force")
	if code != 1 || out != "a\nc\n" ||
		errOut != "ifctl: create bad: unit 7: unit already allocated\nCommand failed FILE:2\nifctl: unknown command \"frob\"\nCommand failed FILE:3\n" {
		t.Errorf("-force: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := d.taken(); got != "create a, create c" {
		t.Errorf("done with -force: %s", got)
	}

	// A line ifctl cannot parse stops the batch too: it is never sent, and
	// neither is anything after it.
	out, errOut, code = runBatchFile(t, sock, "create a\ncreate\ncreate c\n")
	if code != 1 || out != "a\n" || !strings.HasSuffix(errOut, "Command failed FILE:2\n") {
		t.Errorf("usage error: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	if got := d.taken(); got != "create a" {
		t.Errorf("done after a bad line 2: %s", got)
	}

	for _, args := range [][]string{{"-batch", "x", "list"}, {"-force", "list"}} {
		var o, e bytes.Buffer
		if code := Main(append([]string{"--socket", sock}, args...), &o, &e); code != 2 {
			t.Errorf("ifctl %v: exit %d, want 2 (usage)", args, code)
		}
	}
	var o, e bytes.Buffer
	if code := Main([]string{"--socket", sock, "-batch", filepath.Join(t.TempDir(), "none")}, &o, &e); code != 1 || !strings.Contains(e.String(), "no such file") {
		t.Errorf("missing file: exit %d, %q", code, e.String())
	}
}
