package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr"
)

func TestDecodeRequest(t *testing.T) {
	ok := []string{
		`{"v":1,"op":"create","name":"bridge"}`,
		`{"v":1,"op":"create","name":"vlan","dev":"eth0","vid":10}`,
		`{"v":1,"op":"destroy","name":"bridge3"}`,
		`{"v":1,"op":"list"}`,
		`{"v":1,"op":"status"}`,
		`{"v":1,"op":"resync"}`,
		`{"v":1,"op":"reload"}`,
		`{"v":1,"op":"reload","dry_run":true}`,
	}
	for _, s := range ok {
		if _, err := DecodeRequest([]byte(s)); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	bad := map[string]string{
		`{"v":2,"op":"list"}`:                                            "version 2",
		`{"op":"list"}`:                                                  "version 0",
		`{"v":1,"op":"explode"}`:                                         "unknown op",
		`{"v":1,"op":"create"}`:                                          "needs a name",
		`{"v":1,"op":"destroy","name":"x","vid":3}`:                      "only a name",
		`{"v":1,"op":"list","name":"x"}`:                                 "no arguments",
		`{"v":1,"op":"list","extra":1}`:                                  "unknown field",
		`{"v":1,"op":"list"}{"v":1}`:                                     "trailing",
		`{"v":1,"op":"create","name":"vlan","dev":"a/b"}`:                "dev",
		`{"v":1,"op":"create","name":"` + strings.Repeat("x", 65) + `"}`: "64 bytes",
		"\xff":                                "UTF-8",
		"[]":                                  "cannot unmarshal",
		strings.Repeat(" ", MaxRequestSize+1): "exceeds",
	}
	for s, want := range bad {
		_, err := DecodeRequest([]byte(s))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%.40q: got %v, want an error containing %q", s, err, want)
		}
	}
}

func TestRemoteErrorUnwrapsToValue(t *testing.T) {
	for _, c := range codes {
		err := fmt.Errorf("context: %w", c.err)
		resp := ErrorResponse(err)
		var back Response
		b, _ := json.Marshal(resp)
		json.Unmarshal(b, &back)
		re := &RemoteError{Code: back.Code, Msg: back.Error}
		if !errors.Is(re, c.err) {
			t.Errorf("code %s does not unwrap to %v", c.code, c.err)
		}
	}
	if CodeOf(errors.New("other")) != "internal" {
		t.Error("unknown errors must be internal")
	}
	if CodeOf(fmt.Errorf("x: %w", ifmgr.ErrUnitRange)) != "unit-range" {
		t.Error("unit-range")
	}
}

// FuzzDecodeRequest: the decoder never panics, and whatever it accepts is
// within the bounds the manager relies on, reaches exactly the backend
// method its op names (an op the server cannot serve would be answered
// with an empty success), and survives a round trip.
func FuzzDecodeRequest(f *testing.F) {
	f.Add([]byte(`{"v":1,"op":"create","name":"vlan","dev":"eth0","vid":10}`))
	f.Add([]byte(`{"v":1,"op":"destroy","name":"bridge3"}`))
	f.Add([]byte(`{"v":1,"op":"list"}`))
	f.Add([]byte(`{"v":1,"op":"reload","dry_run":true}`))
	be := &recordingBackend{}
	srv := &Server{Backend: be}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := DecodeRequest(b)
		if err != nil {
			return
		}
		if r.V != Version || len(r.Name) > 64 || len(r.Dev) > 64 {
			t.Fatalf("accepted out-of-bounds request %+v", r)
		}
		switch r.Op {
		case OpCreate, OpDestroy, OpList, OpStatus, OpResync, OpReload:
		default:
			t.Fatalf("accepted op %q", r.Op)
		}
		if r.DryRun && r.Op != OpReload {
			t.Fatalf("accepted dry_run on %q", r.Op)
		}
		if resp := srv.dispatch(r); resp.Error != "" {
			t.Fatalf("%+v: backend answered %s", r, resp.Error)
		}
		if calls := be.taken(); len(calls) != 1 || calls[0] != r.Op {
			t.Fatalf("%+v reached backend methods %q, want exactly %q", r, calls, r.Op)
		}
		again, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		r2, err := DecodeRequest(again)
		if err != nil || r2 != r {
			t.Fatalf("round trip: %+v -> %s -> %+v, %v", r, again, r2, err)
		}
	})
}
