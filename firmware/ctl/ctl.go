// Package ctl is ifctl, the command line of ifmgrd. Its output is a contract
// that scripts and tests rely on: a created name alone on stdout, errors as
// "ifctl: <what>: <why>" on stderr with exit 1, usage errors with exit 2.
package ctl

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/uroute/uroute/ifmgr"
	"github.com/uroute/uroute/ifmgr/api"
	"github.com/uroute/uroute/ifmgr/ifname"
)

const usage = `usage: ifctl [--socket PATH] COMMAND [ARGS]

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

func run(args []string, stdout, _ io.Writer) error {
	fs := newFlags("ifctl")
	socket := fs.String("socket", api.DefaultSocket, "ifmgrd control socket")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err.Error()}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return usageError{"no command"}
	}
	cmd, rest := rest[0], rest[1:]

	sub := newFlags(cmd)
	var dev string
	var vid int
	var asJSON, dryRun bool
	switch cmd {
	case "create":
		sub.StringVar(&dev, "dev", "", "VLAN parent")
		sub.IntVar(&vid, "vid", 0, "VLAN id")
	case "list", "status":
		sub.BoolVar(&asJSON, "j", false, "JSON output")
		sub.BoolVar(&asJSON, "json", false, "JSON output")
	case "reload":
		sub.BoolVar(&dryRun, "dry-run", false, "print the plan only")
	case "destroy", "resync":
	case "help":
		return flag.ErrHelp
	default:
		return usageError{fmt.Sprintf("unknown command %q", cmd)}
	}
	pos, err := parseInterleaved(sub, rest)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{fmt.Sprintf("%s: %v", cmd, err)}
	}
	wantArgs := map[string]int{"create": 1, "destroy": 1}[cmd]
	if len(pos) != wantArgs {
		return usageError{fmt.Sprintf("%s takes %d argument(s), got %d", cmd, wantArgs, len(pos))}
	}
	if cmd == "create" && vid != 0 {
		if err := ifname.ValidVID(vid); err != nil {
			return fmt.Errorf("create %s: %w", pos[0], err)
		}
	}

	c, err := api.Dial(*socket)
	if err != nil {
		return err
	}
	defer c.Close()

	switch cmd {
	case "create":
		in, err := c.Create(pos[0], dev, vid)
		if err != nil {
			return fmt.Errorf("create %s: %w", pos[0], err)
		}
		fmt.Fprintln(stdout, in.Name)
	case "destroy":
		if err := c.Destroy(pos[0]); err != nil {
			return fmt.Errorf("destroy %s: %w", pos[0], err)
		}
	case "list":
		list, err := c.List()
		if err != nil {
			return fmt.Errorf("list: %w", err)
		}
		if asJSON {
			return writeJSON(stdout, list)
		}
		return writeList(stdout, list)
	case "status":
		st, err := c.Status()
		if err != nil {
			return fmt.Errorf("status: %w", err)
		}
		if asJSON {
			return writeJSON(stdout, st)
		}
		writeStatus(stdout, st)
	case "resync":
		if err := c.Resync(); err != nil {
			return fmt.Errorf("resync: %w", err)
		}
	case "reload":
		lines, err := c.Reload(dryRun)
		if err != nil {
			return fmt.Errorf("reload: %w", err)
		}
		if len(lines) == 0 {
			fmt.Fprintln(stdout, "nothing to change")
		}
		for _, l := range lines {
			fmt.Fprintln(stdout, l)
		}
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
