// Command qmpctl talks to a running QEMU over its QMP socket: one command
// with its reply, or a NIC hot-plugged into (or unplugged from) the VM that
// scripts/run-qemu.sh or scripts/demo.sh started.
//
//	qmpctl [flags] CMD [JSON-ARGS]     run QMP command CMD, print its return value
//	qmpctl [flags] nic add [ID [MAC]]  hot-plug a virtio NIC (default nic2, 52:54:00:12:34:03)
//	qmpctl [flags] nic del [ID]        unplug it and wait until the guest let it go
//
// Flags:
//
//	-s SOCK     QMP socket (default $UROUTE_DEMO_QMP, else /tmp/uroute-demo.qmp)
//	-t DUR      give up after DUR (default 60s)
//	-hub N      QEMU hub of the new NIC's netdev (default 2)
//	-bus BUS    PCIe root port to plug into (default rp1)
//
// JSON-ARGS is the command's "arguments" object, e.g.
//
//	qmpctl query-status
//	qmpctl set_link '{"name":"nic2","up":false}'
//	qmpctl human-monitor-command '{"command-line":"info network"}'
//
// The return value is printed as indented JSON; a string return value (as
// from human-monitor-command) is printed as plain text.
//
// "nic add ID MAC" runs netdev_add (type hubport, id nID without the "nic"
// prefix, e.g. n2 for nic2, on hub -hub) and device_add (virtio-net-pci, id
// ID, bus -bus, romfile= so no option ROM is loaded). The hub has no other
// port: the NIC has carrier and nothing on the wire, like the two NICs
// run-qemu.sh boots with. If device_add fails, the netdev is removed again.
// "nic del ID" runs device_del, waits for the DEVICE_DELETED event of that
// device (QEMU sends one for the virtio backend first, which names only a
// path), then netdev_del.
//
// QEMU serves one QMP client at a time on a socket: while another one is
// connected, qmpctl gets no greeting and fails after 10 s.
//
// Exit status: 0 on success, 1 on a QMP or connection error, 2 on a usage
// error.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/uroute/uroute/qemu-test/qmp"
)

// Defaults shared with scripts/demo.sh and scripts/hotplug.sh.
const (
	DefaultSocket = "/tmp/uroute-demo.qmp"
	DefaultNIC    = "nic2"
	DefaultMAC    = "52:54:00:12:34:03"
	DefaultHub    = 2
	DefaultBus    = "rp1"

	dialTimeout = 10 * time.Second
)

// action is what one qmpctl invocation does.
type action int

const (
	actExecute action = iota // one QMP command
	actNICAdd
	actNICDel
)

// invocation is the parsed command line.
type invocation struct {
	Socket  string
	Timeout time.Duration
	Action  action

	// actExecute
	Command string
	Args    json.RawMessage // a JSON object, or nil for none

	// actNICAdd, actNICDel
	ID     string // device id, e.g. nic2
	Netdev string // netdev id, e.g. n2
	MAC    string // actNICAdd only
	Hub    int
	Bus    string
}

// usageError is a bad command line (exit status 2).
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

const usage = `usage:
  qmpctl [flags] CMD [JSON-ARGS]     run QMP command CMD, print its return value
  qmpctl [flags] nic add [ID [MAC]]  hot-plug a virtio NIC (default nic2 52:54:00:12:34:03)
  qmpctl [flags] nic del [ID]        unplug it (device_del, DEVICE_DELETED, netdev_del)
flags:
`

// parseArgs parses qmpctl's arguments (without the program name). getenv
// supplies UROUTE_DEMO_QMP.
func parseArgs(args []string, getenv func(string) string, flagOut io.Writer) (*invocation, error) {
	inv := &invocation{}
	defSock := getenv("UROUTE_DEMO_QMP")
	if defSock == "" {
		defSock = DefaultSocket
	}
	flags := flag.NewFlagSet("qmpctl", flag.ContinueOnError)
	flags.SetOutput(flagOut)
	flags.Usage = func() {
		fmt.Fprint(flagOut, usage)
		flags.PrintDefaults()
	}
	flags.StringVar(&inv.Socket, "s", defSock, "QMP socket ($UROUTE_DEMO_QMP)")
	flags.DurationVar(&inv.Timeout, "t", 60*time.Second, "give up after this long")
	flags.IntVar(&inv.Hub, "hub", DefaultHub, "nic add: QEMU hub id of the new NIC's netdev")
	flags.StringVar(&inv.Bus, "bus", DefaultBus, "nic add: PCIe root port to plug the NIC into")
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, usageError{err.Error()}
	}
	if inv.Socket == "" {
		return nil, usagef("-s: empty socket path")
	}
	if inv.Timeout <= 0 {
		return nil, usagef("-t: want a positive duration, not %v", inv.Timeout)
	}
	rest := flags.Args()
	if len(rest) == 0 {
		return nil, usagef("no command")
	}
	if rest[0] == "nic" {
		return parseNIC(inv, rest[1:])
	}

	inv.Action = actExecute
	inv.Command = rest[0]
	switch len(rest) {
	case 1:
	case 2:
		a := bytes.TrimSpace([]byte(rest[1]))
		var obj map[string]json.RawMessage
		if err := json.Unmarshal(a, &obj); err != nil || obj == nil {
			return nil, usagef("%s: arguments must be one JSON object, like '{\"id\":\"nic2\"}': %q", inv.Command, rest[1])
		}
		inv.Args = json.RawMessage(a)
	default:
		return nil, usagef("%s: too many arguments (the command's arguments are one JSON object)", inv.Command)
	}
	return inv, nil
}

func parseNIC(inv *invocation, args []string) (*invocation, error) {
	if len(args) == 0 {
		return nil, usagef("nic: want add or del")
	}
	verb, max := args[0], 0
	switch verb {
	case "add":
		inv.Action, max = actNICAdd, 2
	case "del":
		inv.Action, max = actNICDel, 1
	default:
		return nil, usagef("nic %s: want add or del", verb)
	}
	args = args[1:]
	if len(args) > max {
		return nil, usagef("nic %s: too many arguments", verb)
	}
	inv.ID, inv.MAC = DefaultNIC, DefaultMAC
	if len(args) >= 1 {
		inv.ID = args[0]
	}
	if len(args) >= 2 {
		inv.MAC = args[1]
	}
	if !validID(inv.ID) {
		return nil, usagef("nic: bad device id %q (QEMU ids: a letter, then letters, digits, '-', '.', '_')", inv.ID)
	}
	inv.Netdev = netdevID(inv.ID)
	if inv.Action == actNICAdd {
		hw, err := net.ParseMAC(inv.MAC)
		if err != nil || len(hw) != 6 {
			return nil, usagef("nic add: bad MAC %q", inv.MAC)
		}
		if hw[0]&1 != 0 {
			return nil, usagef("nic add: MAC %s is a multicast address", inv.MAC)
		}
		inv.MAC = hw.String()
		if inv.Hub < 0 {
			return nil, usagef("-hub: want a hub id >= 0, not %d", inv.Hub)
		}
		if inv.Bus == "" {
			return nil, usagef("-bus: empty")
		}
	}
	return inv, nil
}

// netdevID is the netdev id for device id: "n" and the id without a "nic"
// prefix, so nic2 gets n2 (run-qemu.sh's boot NICs are n0 and n1).
func netdevID(id string) string { return "n" + strings.TrimPrefix(id, "nic") }

// validID reports whether s is an id QEMU accepts (qemu's id_wellformed).
func validID(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z':
		case i > 0 && (r >= '0' && r <= '9' || r == '-' || r == '.' || r == '_'):
		default:
			return false
		}
	}
	return true
}

// run does what inv says, printing to out.
func run(ctx context.Context, inv *invocation, out io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, inv.Timeout)
	defer cancel()
	// QEMU greets at once; no greeting means the socket is busy.
	dctx, dcancel := context.WithTimeout(ctx, min(inv.Timeout, dialTimeout))
	c, err := qmp.Dial(dctx, inv.Socket)
	dcancel()
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("%w (QEMU serves one QMP client at a time: is another one connected to %s?)", err, inv.Socket)
		}
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w (no QEMU there: start ./scripts/demo.sh, or pass the socket of run-qemu.sh --qmp with -s or UROUTE_DEMO_QMP)", err)
		}
		return err
	}
	defer c.Close()

	switch inv.Action {
	case actNICAdd:
		return nicAdd(ctx, c, inv, out)
	case actNICDel:
		return nicDel(ctx, c, inv, out)
	}
	var args any
	if inv.Args != nil {
		args = inv.Args
	}
	ret, err := c.Execute(ctx, inv.Command, args)
	if err != nil {
		return err
	}
	return printReturn(out, ret)
}

// printReturn prints a return value: a JSON string as its text, anything
// else as indented JSON.
func printReturn(out io.Writer, ret json.RawMessage) error {
	var s string
	if json.Unmarshal(ret, &s) == nil {
		if s != "" && !strings.HasSuffix(s, "\n") {
			s += "\n"
		}
		_, err := io.WriteString(out, strings.ReplaceAll(s, "\r\n", "\n"))
		return err
	}
	var b bytes.Buffer
	if len(ret) == 0 {
		ret = json.RawMessage("{}")
	}
	if err := json.Indent(&b, ret, "", "  "); err != nil {
		return fmt.Errorf("qmpctl: QEMU's reply is not JSON: %w", err)
	}
	b.WriteByte('\n')
	_, err := out.Write(b.Bytes())
	return err
}

func nicAdd(ctx context.Context, c *qmp.Client, inv *invocation, out io.Writer) error {
	if err := c.PlugNIC(ctx, inv.nic()); err != nil {
		return err
	}
	fmt.Fprintf(out, "device %s: virtio-net-pci mac %s on %s (netdev %s on hub %d), plugged\n", inv.ID, inv.MAC, inv.Bus, inv.Netdev, inv.Hub)
	return nil
}

func nicDel(ctx context.Context, c *qmp.Client, inv *invocation, out io.Writer) error {
	start := time.Now()
	if err := c.UnplugNIC(ctx, inv.nic()); err != nil {
		return err
	}
	fmt.Fprintf(out, "device %s: deleted after %v, netdev %s removed\n", inv.ID, time.Since(start).Round(time.Millisecond), inv.Netdev)
	return nil
}

func (inv *invocation) nic() qmp.NIC {
	return qmp.NIC{ID: inv.ID, Netdev: inv.Netdev, MAC: inv.MAC, Hub: inv.Hub, Bus: inv.Bus}
}

func main() {
	inv, err := parseArgs(os.Args[1:], os.Getenv, os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	var ue usageError
	if errors.As(err, &ue) {
		fmt.Fprintf(os.Stderr, "qmpctl: %s\n%s", ue.msg, usage)
		os.Exit(2)
	}
	if err := run(context.Background(), inv, os.Stdout); err != nil {
		fmt.Fprintf(os.Stderr, "qmpctl: %v\n", err)
		os.Exit(1)
	}
}
