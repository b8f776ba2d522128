// Package ctl is ifctl, the command line of ifmgrd. Its output is a contract
// that scripts and tests rely on: a created name alone on stdout, errors as
// "ifctl: <what>: <why>" on stderr with exit 1, usage errors with exit 2.
package ctl

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/ifmgr/ifname"
)

const usage = `usage: ifctl [--socket PATH] COMMAND [ARGS]
       ifctl [--socket PATH] -batch FILE|- [-force]

  -batch FILE  run the commands in FILE (- for stdin), one per line, over one
               connection, pipelined (like ip -batch); output in line order; a
               failed line is reported "Command failed FILE:LINE" and ends the
               batch (nothing after it is done) unless -force; exit 1 if any failed

commands:
  create bridge | bridgeN              create a bridge (lowest free unit, or unit N)
  create vlan | vlanN --dev PARENT --vid N
                                       create an 802.1Q VLAN on PARENT
  destroy NAME                         destroy an interface ifmgr manages
  list [-j]                            managed interfaces: name kind unit identity state;
                                       then each VLAN-filtering bridge's own and ports'
                                       membership (10:u* untagged PVID, 20:t tagged)
  status [-j]                          daemon counters: DB, commits, units, resyncs
  resync                               re-read the kernel and converge
  reload [--dry-run]                   re-read the board profile and apply it (or print the plan)
`

type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

// Main runs ifctl and returns its exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	err := run(args, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stderr, usage)
		return 0
	case errors.Is(err, errBatchFailed):
		return 1 // each failure is reported already
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "ifctl: %s\n%s", ue.msg, usage)
		return 2
	default:
		fmt.Fprintf(stderr, "ifctl: %v\n", err)
		return 1
	}
}

// parseInterleaved parses flags that may come before or after positional
// arguments ("create vlan --dev eth0 --vid 10").
func parseInterleaved(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, as usage errors
	return fs
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("ifctl")
	socket := fs.String("socket", api.DefaultSocket, "ifmgrd control socket")
	batch := fs.String("batch", "", "read commands from FILE (- for stdin)")
	force := fs.Bool("force", false, "with -batch: go on past failed commands")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	if *batch != "" {
		if len(fs.Args()) > 0 {
			return usageError{"-batch takes no command: the commands are in the file"}
		}
		return runBatch(*socket, *batch, *force, stdout, stderr)
	}
	if *force {
		return usageError{"-force goes with -batch"}
	}
	cmd, err := parseCommand(fs.Args())
	if err != nil {
		return err
	}
	c, err := api.Dial(*socket)
	if err != nil {
		return err
	}
	defer c.Close()
	resp, err := c.Do(cmd.request())
	if err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return cmd.print(stdout, resp)
}

// command is one parsed ifctl command, from the command line or a batch
// line.
type command struct {
	name   string // create, destroy, list, status, resync, reload
	arg    string // create, destroy: the interface or cloner name
	dev    string
	vid    int
	asJSON bool
	dryRun bool
}

// String names the command in error messages: "create bridge9", "list".
func (c command) String() string {
	if c.arg != "" {
		return c.name + " " + c.arg
	}
	return c.name
}

// parseCommand parses a command and its arguments; its errors are usage
// errors (or flag.ErrHelp), and the one check it makes beyond syntax, of
// a VLAN id, is the daemon's rule (ifname.ValidVID).
func parseCommand(args []string) (command, error) {
	if len(args) == 0 {
		return command{}, usageError{"no command"}
	}
	cmd := command{name: args[0]}
	rest := args[1:]
	sub := newFlags(cmd.name)
	switch cmd.name {
	case "create":
		sub.StringVar(&cmd.dev, "dev", "", "VLAN parent")
		sub.IntVar(&cmd.vid, "vid", 0, "VLAN id")
	case "list", "status":
		sub.BoolVar(&cmd.asJSON, "j", false, "JSON output")
		sub.BoolVar(&cmd.asJSON, "json", false, "JSON output")
	case "reload":
		sub.BoolVar(&cmd.dryRun, "dry-run", false, "print the plan only")
	case "destroy", "resync":
	case "help":
		return cmd, flag.ErrHelp
	default:
		return cmd, usageError{fmt.Sprintf("unknown command %q", cmd.name)}
	}
	pos, err := parseInterleaved(sub, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cmd, err
		}
		return cmd, usageError{fmt.Sprintf("%s: %v", cmd.name, err)}
	}
	wantArgs := map[string]int{"create": 1, "destroy": 1}[cmd.name]
	if len(pos) != wantArgs {
		return cmd, usageError{fmt.Sprintf("%s takes %d argument(s), got %d", cmd.name, wantArgs, len(pos))}
	}
	if wantArgs == 1 {
		cmd.arg = pos[0]
	}
	if cmd.name == "create" && cmd.vid != 0 {
		if err := ifname.ValidVID(cmd.vid); err != nil {
			return cmd, fmt.Errorf("%s: %w", cmd, err)
		}
	}
	return cmd, nil
}

func (c command) request() api.Request {
	switch c.name {
	case "create":
		return api.Request{Op: api.OpCreate, Name: c.arg, Dev: c.dev, VID: c.vid}
	case "destroy":
		return api.Request{Op: api.OpDestroy, Name: c.arg}
	case "list":
		return api.Request{Op: api.OpList}
	case "status":
		return api.Request{Op: api.OpStatus}
	case "resync":
		return api.Request{Op: api.OpResync}
	default: // reload
		return api.Request{Op: api.OpReload, DryRun: c.dryRun}
	}
}

// print writes a successful answer as the command's output.
func (c command) print(stdout io.Writer, resp api.Response) error {
	switch c.name {
	case "create":
		if resp.Info == nil {
			return fmt.Errorf("%s: %w: create answered without info", c, api.ErrProtocol)
		}
		fmt.Fprintln(stdout, resp.Info.Name)
	case "list":
		list := resp.List
		if list == nil {
			list = []ifmgr.Info{}
		}
		if c.asJSON {
			return writeJSON(stdout, list)
		}
		return writeList(stdout, list)
	case "status":
		if resp.Status == nil {
			return fmt.Errorf("%s: %w: status answered without status", c, api.ErrProtocol)
		}
		if c.asJSON {
			return writeJSON(stdout, *resp.Status)
		}
		writeStatus(stdout, *resp.Status)
	case "reload":
		if len(resp.Plan) == 0 {
			fmt.Fprintln(stdout, "nothing to change")
		}
		for _, l := range resp.Plan {
			fmt.Fprintln(stdout, l)
		}
	}
	return nil
}

// errBatchFailed is runBatch's result when a command failed; each failure
// is already reported on stderr.
var errBatchFailed = errors.New("batch: a command failed")

// runBatch runs the commands of file (one per line, as on ifctl's command
// line without "ifctl"; blank lines and lines starting with # skipped)
// over one connection, like ip -batch: requests are pipelined, answers and
// output come in line order, and a failed line is reported as
// "ifctl: COMMAND: WHY" then "Command failed FILE:LINE" on stderr. Without
// force the batch stops at the first failure and nothing after it is done
// (the daemon skips the requests already sent behind it: api.Request.Chain);
// with force it goes on. Either way a failure makes the exit status 1.
func runBatch(socket, file string, force bool, stdout, stderr io.Writer) error {
	in := io.Reader(os.Stdin)
	if file != "-" {
		f, err := os.Open(file)
		if err != nil {
			return fmt.Errorf("batch: %w", err)
		}
		defer f.Close()
		in = f
	}
	c, err := api.Dial(socket)
	if err != nil {
		return err
	}
	defer c.Close()

	type sent struct {
		line int
		cmd  command
	}
	// The reader hands lines to Pipeline's sender while answers come back;
	// the line numbers and commands travel in the same order.
	lines := make(chan sent, api.DefaultWindow+2)
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 0, 4096), api.MaxRequestSize)
	lineNo := 0
	var readErr error
	stopped := false
	next := func() (api.Pipelined, bool) {
		for !stopped && sc.Scan() {
			lineNo++
			text := strings.TrimSpace(sc.Text())
			if text == "" || strings.HasPrefix(text, "#") {
				continue
			}
			cmd, err := parseCommand(strings.Fields(text))
			if errors.Is(err, flag.ErrHelp) {
				err = usageError{"help is not a batch command"}
			}
			lines <- sent{lineNo, cmd}
			if err != nil {
				// Nothing after a line that failed is sent, unless forced.
				stopped = !force
				return api.Pipelined{Err: err}, true
			}
			req := cmd.request()
			req.Chain = !force
			return api.Pipelined{Req: req}, true
		}
		if err := sc.Err(); err != nil && !stopped {
			readErr = fmt.Errorf("batch: %s line %d: %w", file, lineNo+1, err)
		}
		return api.Pipelined{}, false
	}
	failed := false
	err = c.Pipeline(next, api.DefaultWindow, func(resp api.Response, err error) bool {
		s := <-lines
		if err == nil {
			err = s.cmd.print(stdout, resp)
		}
		if err == nil {
			return true
		}
		failed = true
		var ue usageError
		if errors.As(err, &ue) {
			fmt.Fprintf(stderr, "ifctl: %s\n", ue.msg)
		} else {
			fmt.Fprintf(stderr, "ifctl: %s: %v\n", s.cmd, err)
		}
		fmt.Fprintf(stderr, "Command failed %s:%d\n", file, s.line)
		return force
	})
	switch {
	case err != nil:
		return err
	case readErr != nil:
		return readErr
	case failed:
		return errBatchFailed
	}
	return nil
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	return enc.Encode(v)
}

// writeList prints one line per interface (name kind unit identity
// state), then, if a bridge filters VLANs, its membership section: one line
// for the bridge's own side and one per port (bridge port entries), never
// five fields, so that a script reading the five-field lines is not misled.
func writeList(w io.Writer, list []ifmgr.Info) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, in := range list {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", in.Name, in.Kind, in.Unit, in.Identity, in.State)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	header := false
	for _, in := range list {
		if !in.VLANFiltering {
			continue
		}
		if !header {
			fmt.Fprintln(tw, "bridge VLANs (vid:u untagged, vid:t tagged, * PVID):")
			header = true
		}
		fmt.Fprintf(tw, "  %s\tself\t%s\n", in.Name, in.SelfVLANs)
		for _, p := range in.Ports {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", in.Name, p.Port, p.VLANs)
		}
	}
	return tw.Flush()
}

// convergedText is status's "converged:" line: yes, or what is left.
func convergedText(st ifmgr.Status) string {
	if st.Converged {
		return "yes"
	}
	return fmt.Sprintf("no (%d actions pending, %d refused, %d event batches queued)", st.Pending, len(st.Refused), st.EventDepth)
}

func writeStatus(w io.Writer, st ifmgr.Status) {
	profile := st.Profile
	if profile == "" {
		profile = "none (managing only what ifctl asks for)"
	}
	fmt.Fprintf(w, "profile: %s\n", profile)
	if st.Rejected != "" {
		fmt.Fprintf(w, "profile rejected: %s\n", st.Rejected)
	}
	if st.Profile != "" {
		fmt.Fprintf(w, "converged: %s\n", convergedText(st))
	}
	if st.DBProblem != "" {
		fmt.Fprintf(w, "db NOT PERSISTING: %s\n", st.DBProblem)
	}
	fmt.Fprintf(w, "db: %s (%d bytes)\ncommits since start: %d\nlinks seen: %d\nrequest queue: %d\nevent queue: %d\n", st.DB, st.DBSize, st.Commits, st.Links, st.QueueDepth, st.EventDepth)
	for _, k := range slices.Sorted(maps.Keys(st.Managed)) {
		fmt.Fprintf(w, "managed %s: %d\n", k, st.Managed[k])
	}
	for _, c := range st.Cloners {
		fmt.Fprintf(w, "cloner %s (%s, max %d): %d allocated, %d held by foreign interfaces\n", c.Name, c.Template, c.MaxUnit, c.Allocated, c.Held)
	}
	for _, from := range slices.Sorted(maps.Keys(st.Renamed)) {
		fmt.Fprintf(w, "renamed from outside: %s is now %s (its unit stays reserved until the link goes)\n", from, st.Renamed[from])
	}
	for _, r := range slices.Sorted(maps.Keys(st.Resyncs)) {
		fmt.Fprintf(w, "resyncs (%s): %d\n", r, st.Resyncs[r])
	}
	if bv := st.BridgeVLANs; bv != nil {
		fmt.Fprintf(w, "bridge VLANs: %d filtering bridges, %d own entries; %d ports, %d entries; %d changes pending\n", bv.Bridges, bv.SelfEntries, bv.Ports, bv.PortEntries, bv.Pending)
	}
	if lc := st.LastConverge; lc != nil {
		fmt.Fprintf(w, "last converge (%s): %d rounds, %d actions done, %d failed\n", lc.Trigger, lc.Rounds, lc.Done, len(lc.Failed))
		for _, f := range lc.Failed {
			fmt.Fprintf(w, "  failed: %s: %s\n", f.Action, f.Error)
		}
		if lc.DBError != "" {
			fmt.Fprintf(w, "  DB commit failed: %s\n", lc.DBError)
		}
	}
	if len(st.Refused) > 0 {
		fmt.Fprintf(w, "refused actions: %d (retried with backoff, at once when what they depend on changes)\n", len(st.Refused))
		for _, r := range st.Refused {
			fmt.Fprintf(w, "  refused: %s: %s (%d attempts since %s, next in %s)\n", r.Action, r.Error, r.Attempts,
				r.Since.Format(time.RFC3339), max(time.Until(r.NextRetry), 0).Round(time.Second))
		}
	}
}
