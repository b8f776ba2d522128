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

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/ifmgr/kernel"
	"github.com/uroute/uroute/persist"
)

// DefaultDB sits on the router's persistent data partition.
const DefaultDB = "/data/uroute/ifmgr.db"

// Options is everything ifmgrd is configured with.
type Options struct {
	DB             string
	Socket         string
	OwnerGroup     uint32
	BridgeTemplate string
	BridgeMax      uint32
	VLANTemplate   string
	VLANMax        uint32
	WatchBuffer    int
	RequestTimeout time.Duration // how long a client request may wait for the owner
	Logger         *slog.Logger
	// Ready, if set, is called once the control socket accepts requests.
	Ready func()
}

// ParseFlags reads ifmgrd's command line. Usage errors are reported with
// flag.ErrHelp or a message naming the bad flag.
func ParseFlags(args []string, stderr io.Writer) (Options, error) {
	fs := flag.NewFlagSet("ifmgrd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o Options
	var group, level string
	fs.StringVar(&o.DB, "db", DefaultDB, "allocation database path, or "+persist.MemoryPath+" to run without persistence")
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
	bridge, err := ifmgr.NewCloner("bridge", "bridge", o.BridgeTemplate, o.BridgeMax)
	if err != nil {
		return err
	}
	vlan, err := ifmgr.NewCloner("vlan", "vlan", o.VLANTemplate, o.VLANMax)
	if err != nil {
		return err
	}

	store, rec, err := persist.Open(o.DB, persist.Options{Logger: log})
	if err != nil {
		return fmt.Errorf("open allocation DB: %w", err)
	}
	defer store.Close()
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

	m, err := ifmgr.New(ifmgr.Config{
		Kernel:     conn,
		Store:      store,
		Watcher:    watcher,
		Cloners:    []*ifmgr.Cloner{bridge, vlan},
		OwnerGroup: o.OwnerGroup,
		Logger:     log,
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

	srv := &api.Server{Backend: m, Logger: log, RequestTimeout: o.RequestTimeout}
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

// Main is ifmgrd's entry point: flags, signals, exit status.
func Main(args []string, stderr io.Writer) int {
	o, err := ParseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "ifmgrd:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if err := Run(ctx, o); err != nil {
		fmt.Fprintln(stderr, "ifmgrd:", err)
		return 1
	}
	return 0
}
