package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestParseArgs(t *testing.T) {
	noEnv := env(nil)
	for _, tc := range []struct {
		name string
		args []string
		env  func(string) string
		want invocation
	}{
		{"plain command", []string{"query-status"}, noEnv,
			invocation{Socket: DefaultSocket, Timeout: time.Minute, Action: actExecute, Command: "query-status", Hub: 2, Bus: "rp1"}},
		{"command with arguments", []string{"-s", "/x.sock", "-t", "5s", "set_link", ` {"name":"nic2","up":false} `}, noEnv,
			invocation{Socket: "/x.sock", Timeout: 5 * time.Second, Action: actExecute, Command: "set_link",
				Args: json.RawMessage(`{"name":"nic2","up":false}`), Hub: 2, Bus: "rp1"}},
		{"socket from the environment", []string{"quit"}, env(map[string]string{"UROUTE_DEMO_QMP": "/e.sock"}),
			invocation{Socket: "/e.sock", Timeout: time.Minute, Action: actExecute, Command: "quit", Hub: 2, Bus: "rp1"}},
		{"-s beats the environment", []string{"-s", "/f.sock", "quit"}, env(map[string]string{"UROUTE_DEMO_QMP": "/e.sock"}),
			invocation{Socket: "/f.sock", Timeout: time.Minute, Action: actExecute, Command: "quit", Hub: 2, Bus: "rp1"}},
		{"nic add, defaults", []string{"nic", "add"}, noEnv,
			invocation{Socket: DefaultSocket, Timeout: time.Minute, Action: actNICAdd,
				ID: "nic2", Netdev: "n2", MAC: "52:54:00:12:34:03", Hub: 2, Bus: "rp1"}},
		{"nic add, id, MAC normalised, hub, bus", []string{"-hub", "7", "-bus", "rp9", "nic", "add", "nic5", "52-54-00-AB-CD-EF"}, noEnv,
			invocation{Socket: DefaultSocket, Timeout: time.Minute, Action: actNICAdd,
				ID: "nic5", Netdev: "n5", MAC: "52:54:00:ab:cd:ef", Hub: 7, Bus: "rp9"}},
		{"nic add, id without nic prefix", []string{"nic", "add", "wan"}, noEnv,
			invocation{Socket: DefaultSocket, Timeout: time.Minute, Action: actNICAdd,
				ID: "wan", Netdev: "nwan", MAC: DefaultMAC, Hub: 2, Bus: "rp1"}},
		{"nic del, default", []string{"nic", "del"}, noEnv,
			invocation{Socket: DefaultSocket, Timeout: time.Minute, Action: actNICDel,
				ID: "nic2", Netdev: "n2", MAC: DefaultMAC, Hub: 2, Bus: "rp1"}},
		{"nic del, id", []string{"nic", "del", "nic3"}, noEnv,
			invocation{Socket: DefaultSocket, Timeout: time.Minute, Action: actNICDel,
				ID: "nic3", Netdev: "n3", MAC: DefaultMAC, Hub: 2, Bus: "rp1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseArgs(tc.args, tc.env, io.Discard)
			if err != nil {
				t.Fatalf("parseArgs(%q): %v", tc.args, err)
			}
			if !reflect.DeepEqual(*got, tc.want) {
				t.Errorf("parseArgs(%q)\n got %+v\nwant %+v", tc.args, *got, tc.want)
			}
		})
	}
}

func TestParseArgsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"-t", "0s", "quit"}, "-t: want a positive duration"},
		{[]string{"-s", "", "quit"}, "-s: empty"},
		{[]string{"-bogus", "quit"}, "flag provided but not defined"},
		{[]string{"device_del", `id=nic2`}, "must be one JSON object"},
		{[]string{"device_del", `["nic2"]`}, "must be one JSON object"},
		{[]string{"device_del", `null`}, "must be one JSON object"},
		{[]string{"device_del", `{"id":"nic2"}`, `{}`}, "too many arguments"},
		{[]string{"nic"}, "want add or del"},
		{[]string{"nic", "plug"}, "nic plug: want add or del"},
		{[]string{"nic", "add", "nic2", "52:54:00:12:34:03", "x"}, "nic add: too many"},
		{[]string{"nic", "del", "nic2", "52:54:00:12:34:03"}, "nic del: too many"},
		{[]string{"nic", "add", "2nic"}, "bad device id"},
		{[]string{"nic", "del", "nic 2"}, "bad device id"},
		{[]string{"nic", "add", "nic2", "52:54:00:12:34"}, "bad MAC"},
		{[]string{"nic", "add", "nic2", "00:00:00:00:fe:80:00:00:00:00:00:00:02:00:5e:10:00:00:00:01"}, "bad MAC"},
		{[]string{"nic", "add", "nic2", "01:00:5e:00:00:01"}, "multicast"},
		{[]string{"-hub", "-1", "nic", "add"}, "-hub"},
	} {
		_, err := parseArgs(tc.args, env(nil), io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("parseArgs(%q) = %v, want a usage error containing %q", tc.args, err, tc.want)
		}
	}
	if _, err := parseArgs([]string{"-h"}, env(nil), io.Discard); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("parseArgs(-h) = %v, want flag.ErrHelp", err)
	}
}

func TestPrintReturn(t *testing.T) {
	for _, tc := range []struct{ ret, want string }{
		{`{}`, "{}\n"},
		{``, "{}\n"},
		{`{"status":"running","running":true}`, "{\n  \"status\": \"running\",\n  \"running\": true\n}\n"},
		{`"hub 2\r\n \\ n2: index=0\r\n"`, "hub 2\n \\ n2: index=0\n"},
		{`""`, ""},
	} {
		var b strings.Builder
		if err := printReturn(&b, json.RawMessage(tc.ret)); err != nil {
			t.Errorf("printReturn(%s): %v", tc.ret, err)
		}
		if b.String() != tc.want {
			t.Errorf("printReturn(%s) = %q, want %q", tc.ret, b.String(), tc.want)
		}
	}
}

// fakeQEMU answers QMP on a unix socket the way QEMU does for hot-plug:
// device_del is followed by two DEVICE_DELETED events, the virtio
// backend's (path only) first. Commands in fail get a GenericError.
type fakeQEMU struct {
	path string
	fail map[string]bool

	mu   sync.Mutex
	seen []string // "cmd args" per command, qmp_capabilities left out
}

func newFake(t *testing.T, fail ...string) *fakeQEMU {
	t.Helper()
	dir, err := os.MkdirTemp("", "qmpctl") // t.TempDir can exceed sun_path
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	f := &fakeQEMU{path: filepath.Join(dir, "qmp.sock"), fail: map[string]bool{}}
	for _, c := range fail {
		f.fail[c] = true
	}
	ln, err := net.Listen("unix", f.path)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		f.serve(c)
	}()
	t.Cleanup(func() { ln.Close(); <-done })
	return f
}

func (f *fakeQEMU) serve(c net.Conn) {
	enc := json.NewEncoder(c)
	enc.Encode(map[string]any{"QMP": map[string]any{"version": map[string]any{}, "capabilities": []string{}}})
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		var req struct {
			Execute   string          `json:"execute"`
			Arguments json.RawMessage `json:"arguments"`
			ID        json.RawMessage `json:"id"`
		}
		if json.Unmarshal(sc.Bytes(), &req) != nil {
			return
		}
		if req.Execute != "qmp_capabilities" {
			f.mu.Lock()
			f.seen = append(f.seen, strings.TrimSpace(req.Execute+" "+string(req.Arguments)))
			f.mu.Unlock()
		}
		if f.fail[req.Execute] {
			enc.Encode(map[string]any{"error": map[string]any{"class": "GenericError", "desc": "it failed"}, "id": req.ID})
			continue
		}
		enc.Encode(map[string]any{"return": map[string]any{}, "id": req.ID})
		if req.Execute == "device_del" {
			var a struct{ ID string }
			json.Unmarshal(req.Arguments, &a)
			enc.Encode(map[string]any{"event": "DEVICE_DELETED", "data": map[string]any{
				"path": "/machine/peripheral/" + a.ID + "/virtio-backend"}})
			time.Sleep(20 * time.Millisecond)
			enc.Encode(map[string]any{"event": "DEVICE_DELETED", "data": map[string]any{
				"device": a.ID, "path": "/machine/peripheral/" + a.ID}})
		}
	}
}

func (f *fakeQEMU) commands() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func runArgs(t *testing.T, f *fakeQEMU, args ...string) (string, error) {
	t.Helper()
	inv, err := parseArgs(append([]string{"-s", f.path, "-t", "10s"}, args...), env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	err = run(context.Background(), inv, &out)
	return out.String(), err
}

func TestNICAddDel(t *testing.T) {
	f := newFake(t)
	if _, err := runArgs(t, f, "nic", "add"); err != nil {
		t.Fatal(err)
	}
	want := []string{
		`netdev_add {"hubid":2,"id":"n2","type":"hubport"}`,
		`device_add {"bus":"rp1","driver":"virtio-net-pci","id":"nic2","mac":"52:54:00:12:34:03","netdev":"n2","romfile":""}`,
	}
	if got := f.commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("nic add sent\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	f = newFake(t)
	out, err := runArgs(t, f, "nic", "del")
	if err != nil {
		t.Fatal(err)
	}
	want = []string{`device_del {"id":"nic2"}`, `netdev_del {"id":"n2"}`}
	if got := f.commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("nic del sent\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !strings.Contains(out, "device nic2: deleted after") {
		t.Errorf("nic del printed %q, want the DEVICE_DELETED of nic2", out)
	}
}

func TestNICAddRollsBack(t *testing.T) {
	f := newFake(t, "device_add")
	_, err := runArgs(t, f, "nic", "add")
	if err == nil || !strings.Contains(err.Error(), "it failed") {
		t.Fatalf("nic add with a failing device_add: %v", err)
	}
	want := []string{
		`netdev_add {"hubid":2,"id":"n2","type":"hubport"}`,
		`device_add {"bus":"rp1","driver":"virtio-net-pci","id":"nic2","mac":"52:54:00:12:34:03","netdev":"n2","romfile":""}`,
		`netdev_del {"id":"n2"}`,
	}
	if got := f.commands(); !reflect.DeepEqual(got, want) {
		t.Errorf("sent\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

func TestExecutePrintsReturn(t *testing.T) {
	f := newFake(t)
	out, err := runArgs(t, f, "set_link", `{"name":"nic2","up":false}`)
	if err != nil {
		t.Fatal(err)
	}
	if out != "{}\n" {
		t.Errorf("printed %q, want {}", out)
	}
	if got, want := f.commands(), []string{`set_link {"name":"nic2","up":false}`}; !reflect.DeepEqual(got, want) {
		t.Errorf("sent %q, want %q", got, want)
	}
}

func TestBusySocket(t *testing.T) {
	// A listener that never greets, like QEMU's QMP socket while another
	// client holds it.
	dir, err := os.MkdirTemp("", "qmpctl")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "qmp.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	inv, err := parseArgs([]string{"-s", sock, "-t", "200ms", "query-status"}, env(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	err = run(context.Background(), inv, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "another one connected") {
		t.Errorf("run on a silent socket: %v, want a hint at another client", err)
	}
}
