package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr"
)

// Mark-good reads ifmgrd's status as JSON with its own small struct; fed
// ifmgr.Status itself, it must see what ifmgrd says.
func TestConvergedStatus(t *testing.T) {
	for _, tc := range []struct {
		name string
		st   ifmgr.Status
		want string // "" for converged
	}{
		{"converged", ifmgr.Status{Profile: "qemu-arm64 (/etc/uroute/board.toml)", Converged: true}, ""},
		{"pending", ifmgr.Status{Profile: "qemu-arm64 (/etc/uroute/board.toml)", Pending: 3, EventDepth: 1},
			"3 actions pending, 0 refused, 1 event batches queued"},
		{"refused", ifmgr.Status{Profile: "qemu-arm64 (/etc/uroute/board.toml)", Pending: 1,
			Refused: []ifmgr.RefusalReport{{Action: "create bridge/lan", Error: "no space"}}}, "1 refused"},
		{"no profile", ifmgr.Status{}, "no board profile in force"},
		{"rejected", ifmgr.Status{Profile: "qemu-arm64 (/etc/uroute/board.toml)", Rejected: "parse error", Converged: true},
			"no board profile in force"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.st)
			if err != nil {
				t.Fatal(err)
			}
			err = convergedStatus(b)
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("not converged: %v (status %s)", err, b)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("got %v, want an error naming %q (status %s)", err, tc.want, b)
			}
		})
	}
	// An ifmgrd from before the field is never taken as converged.
	if err := convergedStatus([]byte(`{"profile":"x"}`)); err == nil || !strings.Contains(err.Error(), "older") {
		t.Errorf("status without converged: %v", err)
	}
}
