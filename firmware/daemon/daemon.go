// Package daemon is ifmgrd: it wires the store, the kernel socket, the link
// watcher, the manager and the control socket together, and takes them down
// again in order on SIGTERM.
package daemon

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uroute/uroute/board"
	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

// DefaultDB sits on the router's persistent data partition.
const DefaultDB = "/data/uroute/ifmgr.db"

// Options is everything ifmgrd is configured with.
type Options struct {
	Config         string // board profile; "" = manage only what ifctl asks for
	CheckConfig    string // validate this profile and exit
	DB             string
	DBMirror       bool // keep bbolt in RAM, snapshots at DB (default: only on JFFS2)
	Socket         string
	OwnerGroup     uint32
	BridgeTemplate string
	BridgeMax      uint32
	VLANTemplate   string
	VLANMax        uint32
	WatchBuffer    int
	RequestTimeout time.Duration // how long a client request may wait for the owner
	// RetryMin, RetryMax bound the backoff of refused actions (0: ifmgr's
	// defaults); tests set them.
	RetryMin, RetryMax time.Duration
	Logger             *slog.Logger
	// Ready, if set, is called once the control socket accepts requests.
	Ready func()

	statfs statfsFunc // nil = unix.Statfs; tests fake the DB's file system
	// wrapKernel, if set (tests), wraps the real rtnetlink Conn the owner
	// uses, to inject kernel refusals with the real kernel behind them.
	wrapKernel func(ifmgr.Kernel) ifmgr.Kernel
}

// ParseFlags reads ifmgrd's command line. Usage errors are reported with
// flag.ErrHelp or a message naming the bad flag.
func ParseFlags(args []string, stderr io.Writer) (Options, error) {
	fs := flag.NewFlagSet("ifmgrd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var group, level string
	fs.StringVar(&o.Config, "config", "", "board profile (TOML); without one ifmgrd manages only what ifctl asks for")
	fs.StringVar(&o.CheckConfig, "check-config", "", "validate a board profile, print the verdict and exit")
	fs.StringVar(&o.DB, "db", DefaultDB, "allocation database path, or "+persist.MemoryPath+" to run without persistence")
	fs.BoolVar(&o.DBMirror, "db-mirror", false, "keep the DB in RAM and mirror every commit to -db's directory as a snapshot (automatic on JFFS2)")
	fs.StringVar(&o.Socket, "socket", api.DefaultSocket, "control socket path")
	fs.StringVar(&group, "owner-group", fmt.Sprintf("%#x", ifmgr.DefaultOwnerGroup), "IFLA_GROUP stamped on links ifmgr creates (its ownership marker)")
	fs.StringVar(&o.BridgeTemplate, "bridge-template", "bridge%d", "bridge name template")
	fs.StringVar(&o.VLANTemplate, "vlan-template", "vlan%d", "VLAN name template")
	max := func(p *uint32, name string) {
		*p = ifmgr.DefaultMaxUnit
		fs.Func(name, fmt.Sprintf("highest %s unit (default %d)", strings.TrimSuffix(name, "-max"), ifmgr.DefaultMaxUnit), func(s string) error {
			v, err := strconv.ParseUint(s, 10, 32)
			if err != nil || v > ifmgr.DefaultMaxUnit {
				return fmt.Errorf("want 0-%d", ifmgr.DefaultMaxUnit)
			}
			*p = uint32(v)
			return nil
		})
	}
	max(&o.BridgeMax, "bridge-max")
	max(&o.VLANMax, "vlan-max")
	fs.IntVar(&o.WatchBuffer, "watch-buffer", 0, "link watcher receive buffer in bytes (0 = default)")
	fs.DurationVar(&o.RequestTimeout, "request-timeout", time.Minute, "how long a client request may wait for the owner goroutine")
	fs.StringVar(&level, "log-level", "info", "debug, info, warn or error")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if fs.NArg() > 0 {
		return o, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	g, err := strconv.ParseUint(group, 0, 32)
	if err != nil || g == 0 {
		return o, fmt.Errorf("-owner-group %q: want a non-zero 32-bit number", group)
	}
	o.OwnerGroup = uint32(g)
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return o, fmt.Errorf("-log-level %q: %v", level, err)
	}
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv}))
	return o, nil
}

// Run serves until ctx ends. Startup order matters: the watcher socket is
// subscribed before the manager's first dump, so no link change falls in
// the gap between the two.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	// A bad profile at boot must not stop the router: ifmgrd then manages
	// only what ifctl asks for, says so, and takes a good profile on reload.
	var profile *board.Profile
	var profileErr error
	if o.Config != "" {
		profile, profileErr = board.Load(o.Config)
		if profileErr != nil {
			log.Error("board profile refused; managing only what ifctl asks for until a good one is loaded", "err", profileErr)
			profile = nil
		}
	}
	cloners, err := clonersFor(o, profile)
	if err != nil {
		return err
	}

	store, rec, err := openDB(o, log)
	if err != nil {
		return fmt.Errorf("open allocation DB: %w", err)
	}
	defer store.Close()
	var ifStore ifmgr.Store = store
	if dev := block2mtdBacking(nearestDir(store.Path())); dev != "" && store.Path() != persist.MemoryPath {
		// Emulated flash whose fsync stops in a page cache: see block2mtd.go.
		f, err := os.Open(dev)
		if err != nil {
			return fmt.Errorf("allocation DB on block2mtd over %s: open it to flush commits: %w", dev, err)
		}
		defer f.Close()
		log.Info("allocation DB on block2mtd: every commit is flushed to its disk", "dev", dev)
		ifStore = deviceSyncStore{Store: store, dev: f}
	}
	if rec.Reason != nil {
		log.Error("allocation DB was unreadable and is rebuilt from the kernel", "kept", rec.MovedTo, "reason", rec.Reason)
	}

	watcher, err := kernel.Watch(kernel.WatchOptions{ReadBuffer: o.WatchBuffer})
	if err != nil {
		return fmt.Errorf("link watcher: %w", err)
	}
	conn, err := kernel.Dial()
	if err != nil {
		watcher.Close()
		return fmt.Errorf("rtnetlink: %w", err)
	}
	defer conn.Close()

	var k ifmgr.Kernel = conn
	if o.wrapKernel != nil {
		k = o.wrapKernel(conn)
	}
	m, err := ifmgr.New(ifmgr.Config{
		Kernel:     k,
		Store:      ifStore,
		Watcher:    watcher,
		Cloners:    cloners,
		OwnerGroup: o.OwnerGroup,
		Logger:     log,
		Profile:    profile,
		Facts:      func(ifname string) (string, string) { return board.SysfsFacts("/sys", ifname) },
		RetryMin:   o.RetryMin,
		RetryMax:   o.RetryMax,
	})
	if err != nil {
		watcher.Close()
		return err
	}

	ln, err := api.Listen(o.Socket)
	if err != nil {
		watcher.Close()
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	runErr := make(chan error, 1)
	go func() { runErr <- m.Run(ctx) }()

	if profileErr != nil {
		m.RejectProfile(ctx, profileErr)
	}
	be := &backend{Manager: m, config: o.Config, db: store}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	hupDone := make(chan struct{})
	defer func() { cancel(); <-hupDone }()
	go func() {
		defer close(hupDone)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				if _, err := be.Reload(ctx, false); err != nil {
					log.Error("SIGHUP reload", "err", err)
				}
			}
		}
	}()

	srv := &api.Server{Backend: be, Logger: log, RequestTimeout: o.RequestTimeout}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ctx, ln) }()
	log.Info("ifmgrd serving", "socket", o.Socket, "db", store.Path(), "owner_group", fmt.Sprintf("%#x", o.OwnerGroup))
	if o.Ready != nil {
		o.Ready()
	}

	var first error
	select {
	case first = <-runErr:
		cancel()
		<-serveErr
	case first = <-serveErr:
		cancel()
		if err := <-runErr; first == nil {
			first = err
		}
	case <-ctx.Done():
		<-serveErr
		first = <-runErr
	}
	log.Info("ifmgrd stopped")
	return first
}

// clonersFor takes the cloners from the profile when there is one (its
// [cloners] tables, defaults filled in), else from the flags.
func clonersFor(o Options, p *board.Profile) ([]*ifmgr.Cloner, error) {
	bt, bm, vt, vm := o.BridgeTemplate, o.BridgeMax, o.VLANTemplate, o.VLANMax
	if p != nil {
		b, v := p.Cloners[board.ClonerBridge], p.Cloners[board.ClonerVLAN]
		bt, bm, vt, vm = b.Template, b.Max, v.Template, v.Max
	}
	bridge, err := ifmgr.NewCloner(board.ClonerBridge, kernel.KindBridge, bt, bm)
	if err != nil {
		return nil, err
	}
	vlan, err := ifmgr.NewCloner(board.ClonerVLAN, kernel.KindVLAN, vt, vm)
	if err != nil {
		return nil, err
	}
	return []*ifmgr.Cloner{bridge, vlan}, nil
}

// backend serves the control socket: the manager, plus reload, which reads
// the profile file here so that a bad file never reaches the owner.
type backend struct {
	*ifmgr.Manager
	config string
	db     *persist.Keeper // for Status and Resync (dbwatch.go)
}

var _ api.Backend = (*backend)(nil)

func (b *backend) Reload(ctx context.Context, dryRun bool) ([]string, error) {
	if b.config == "" {
		return nil, fmt.Errorf("%w: ifmgrd runs without --config: nothing to reload", ifmgr.ErrBadRequest)
	}
	p, err := board.Load(b.config)
	if err != nil {
		if !dryRun {
			b.Manager.RejectProfile(ctx, err)
		}
		return nil, fmt.Errorf("%w: %w", ifmgr.ErrBadProfile, err)
	}
	return b.Manager.Reload(ctx, p, dryRun)
}

// CheckConfig validates a profile without touching anything.
func CheckConfig(path string, stdout io.Writer) error {
	p, err := board.Load(path)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: ok: board %s, %d port rules, %d bridge rules, bridges %s, VLANs %s\n",
		path, p.Board, len(p.Ports), len(p.Bridges), p.Cloners[board.ClonerBridge].Template, p.Cloners[board.ClonerVLAN].Template)
	return nil
}

// Main is ifmgrd's entry point: flags, signals, exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	o, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ifmgrd:", err)
		return 2
	}
	if o.CheckConfig != "" {
		if err := CheckConfig(o.CheckConfig, stdout); err != nil {
			fmt.Fprintln(stderr, "ifmgrd: check-config:", err)
			return 1
		}
		return 0
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	go returnMemoryWhenIdle(ctx)
	if err := Run(ctx, o); err != nil {
		fmt.Fprintln(stderr, "ifmgrd:", err)
		return 1
	}
	return 0
}
