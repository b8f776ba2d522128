package daemon

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/uroute/uroute/ifmgr"
)

// Templates given as flags (no profile) go through the same overlap rule as
// a profile's: bridge "br%d" with VLAN "br1%d" would make "br10" both
// bridge 10 and VLAN 0, so the daemon refuses to start, naming the name.
func TestOverlappingFlagTemplatesRefused(t *testing.T) {
	dir := t.TempDir()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := Options{DB: filepath.Join(dir, "u.db"), Socket: filepath.Join(dir, "s"),
		BridgeTemplate: "br%d", BridgeMax: ifmgr.DefaultMaxUnit, VLANTemplate: "br1%d", VLANMax: ifmgr.DefaultMaxUnit,
		Logger: testLogger(nil), Ready: func() { t.Error("daemon started with colliding templates"); cancel() }}
	err := Run(ctx, o)
	if !errors.Is(err, ifmgr.ErrBadTemplate) || !strings.Contains(err.Error(), `"br10"`) {
		t.Fatalf("Run = %v, want ErrBadTemplate naming br10", err)
	}
}
