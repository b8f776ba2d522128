package main

import (
	"bytes"
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/uroute/uroute/firmware/fwimage"
	"github.com/uroute/uroute/firmware/fwimage/fittest"
)

// fakeFlash is the flash layout as sysfs and /dev show it, with regular
// files for the partitions.
type fakeFlash struct {
	flash
	dir  string
	priv ed25519.PrivateKey
	keys string
}

const fakeSlotSize = 64 << 10

func newFakeFlash(t *testing.T) *fakeFlash {
	t.Helper()
	dir := t.TempDir()
	f := &fakeFlash{flash: flash{SysBlock: filepath.Join(dir, "sys"), Dev: filepath.Join(dir, "dev")}, dir: dir}
	parts := []struct {
		dev, name string
		size      int
	}{{"vda2", partEnv, 1 << 20}, {"vda3", "slot-a", fakeSlotSize}, {"vda4", "slot-b", fakeSlotSize}}
	for _, p := range parts {
		sys := filepath.Join(f.SysBlock, p.dev)
		must(t, os.MkdirAll(sys, 0o755))
		must(t, os.WriteFile(filepath.Join(sys, "uevent"), []byte("MAJOR=254\nDEVNAME="+p.dev+"\nDEVTYPE=partition\nPARTNAME="+p.name+"\n"), 0o644))
		must(t, os.WriteFile(filepath.Join(sys, "size"), []byte(strconv.Itoa(p.size/512)+"\n"), 0o644))
		must(t, os.MkdirAll(f.Dev, 0o755))
		fill := byte(0)
		if p.name == partEnv {
			fill = 0xff // erased
		}
		must(t, os.WriteFile(filepath.Join(f.Dev, p.dev), bytes.Repeat([]byte{fill}, p.size), 0o644))
	}
	// The factory: v1 in slot A, the factory env.
	writeAt(t, filepath.Join(f.Dev, "vda3"), f.fit("v1", "qemu-x"))
	env, err := fwimage.FactoryEnv().Encode()
	must(t, err)
	writeAt(t, filepath.Join(f.Dev, "vda2"), env)
	pub, priv, _ := ed25519.GenerateKey(nil)
	f.priv = priv
	f.keys = filepath.Join(dir, "upgrade.pub")
	must(t, os.WriteFile(f.keys, []byte("# test key\n"+hex.EncodeToString(pub)+"\n"), 0o644))
	return f
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func writeAt(t *testing.T, path string, b []byte) {
	t.Helper()
	fd, err := os.OpenFile(path, os.O_WRONLY, 0)
	must(t, err)
	defer fd.Close()
	_, err = fd.WriteAt(b, 0)
	must(t, err)
}

func (f *fakeFlash) fit(version, board string) []byte {
	return fittest.FIT(board, buildArch(), version, []byte("kernel "+version), []byte("ramdisk "+version))
}

// image writes a signed image file and returns its path.
func (f *fakeFlash) image(t *testing.T, name string, fit []byte, priv ed25519.PrivateKey) string {
	t.Helper()
	signed, err := fwimage.Sign(fit, priv)
	must(t, err)
	p := filepath.Join(f.dir, name)
	must(t, os.WriteFile(p, signed, 0o644))
	return p
}

func (f *fakeFlash) upgrade(cmdline string) upgrade {
	return upgrade{Flash: f.flash, Cmdline: cmdline, Keys: f.keys, Attempts: 2, Out: io.Discard}
}

func (f *fakeFlash) state(t *testing.T) fwimage.State {
	t.Helper()
	fd, store, err := f.openEnv()
	must(t, err)
	defer fd.Close()
	st, err := store.Load()
	must(t, err)
	return st
}

func (f *fakeFlash) slot(t *testing.T, dev string) []byte {
	b, err := os.ReadFile(filepath.Join(f.Dev, dev))
	must(t, err)
	return b
}

func TestUpgradeRefusesBeforeWriting(t *testing.T) {
	f := newFakeFlash(t)
	_, other, _ := ed25519.GenerateKey(nil)
	good := f.fit("v2", "qemu-x")
	flipped := f.image(t, "flipped", good, f.priv)
	b, _ := os.ReadFile(flipped)
	b[len(b)/2] ^= 1
	must(t, os.WriteFile(flipped, b, 0o644))
	otherArch := "arm64"
	if buildArch() == "arm64" {
		otherArch = "armv7"
	}
	big := fittest.FIT("qemu-x", buildArch(), "v2", bytes.Repeat([]byte{1}, fakeSlotSize), nil)
	cases := []struct {
		name, path string
		want       error
		text       string
	}{
		{"flipped", flipped, fwimage.ErrSignature, ""},
		{"untrusted", f.image(t, "untrusted", good, other), fwimage.ErrSignature, "does not trust"},
		{"unsigned", func() string { p := filepath.Join(f.dir, "unsigned"); os.WriteFile(p, good, 0o644); return p }(), fwimage.ErrSignature, "no signature trailer"},
		{"other board", f.image(t, "board", f.fit("v2", "ubnt-edgerouter-x"), f.priv), fwimage.ErrWrongTarget, "board ubnt-edgerouter-x"},
		{"other arch", f.image(t, "arch", fittest.FIT("qemu-x", otherArch, "v2", []byte("k"), []byte("r")), f.priv), fwimage.ErrWrongTarget, "image is for " + otherArch},
		{"too big", f.image(t, "big", big, f.priv), nil, "slot B holds"},
		{"missing", filepath.Join(f.dir, "nothing"), os.ErrNotExist, ""},
	}
	envBefore, slotBefore := f.slot(t, "vda2"), f.slot(t, "vda4")
	for _, c := range cases {
		err := f.upgrade("console=ttyAMA0 uroute.slot=A").Run(c.path)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("%s: %v, want %v naming %q", c.name, err, c.want, c.text)
		}
		if !bytes.Equal(f.slot(t, "vda2"), envBefore) || !bytes.Equal(f.slot(t, "vda4"), slotBefore) {
			t.Fatalf("%s: refused, but the env or slot B changed", c.name)
		}
	}
	if err := f.upgrade("console=ttyAMA0").Run(f.image(t, "good", good, f.priv)); !errors.Is(err, errNotAB) {
		t.Errorf("direct boot: %v, want errNotAB", err)
	}
}

func TestUpgradeMarkGoodRollback(t *testing.T) {
	f := newFakeFlash(t)
	v2 := f.fit("v2", "qemu-x")
	if err := f.upgrade("uroute.slot=A").Run(f.image(t, "v2", v2, f.priv)); err != nil {
		t.Fatal(err)
	}
	st := f.state(t)
	if st.Env[fwimage.VarOrder] != "B A" || st.Left("B") != 2 || st.Env[fwimage.VarTrial] != "B" {
		t.Fatalf("armed: %v", st.Env)
	}
	if !bytes.Equal(f.slot(t, "vda4")[:len(v2)], v2) {
		t.Fatal("slot B does not hold the FIT")
	}
	s, err := statusOf(f.flash, "uroute.slot=B")
	must(t, err)
	if s.Good || !strings.Contains(s.Why, "trial boot") || s.Slots["B"].Version != "v2" {
		t.Errorf("status of the trial: %+v", s)
	}

	// B boots and marks itself good.
	if _, err := markGood(f.flash, abBoot{Slot: "B"}); err != nil {
		t.Fatal(err)
	}
	st = f.state(t)
	if st.Left("B") != fwimage.MaxAttempts || st.Env[fwimage.VarTrial] != "" || st.Env[fwimage.VarOrder] != "B A" {
		t.Fatalf("marked good: %v", st.Env)
	}
	s, _ = statusOf(f.flash, "uroute.slot=B")
	if !s.Good || s.Version != "v2" || s.Why != "first in BOOT_ORDER" {
		t.Errorf("status when good: %+v", s)
	}

	// v3 into A fails its trials; U-Boot passes over A and boots B.
	if err := f.upgrade("uroute.slot=B").Run(f.image(t, "v3", f.fit("v3", "qemu-x"), f.priv)); err != nil {
		t.Fatal(err)
	}
	if _, err := markGood(f.flash, abBoot{Slot: "B", Skipped: "A"}); err != nil {
		t.Fatal(err)
	}
	st = f.state(t)
	if st.Env[fwimage.VarRollback] != "A" || st.Env[fwimage.VarOrder] != "B A" || st.Env[fwimage.VarTrial] != "" {
		t.Fatalf("after the rollback: %v", st.Env)
	}
	s, _ = statusOf(f.flash, "uroute.slot=B uroute.skipped=A")
	if !strings.Contains(s.Why, "rollback: slot A (v3)") || s.Rollback != "A" {
		t.Errorf("status after the rollback: %+v", s)
	}
}

// TestBuildArchMatchesFIT: on each GOARCH an image of ours runs on, the
// upgrade accepts the FIT build-fit.sh makes for it (uroute,arch and the
// images' U-Boot arch, "mips" for mipsle), and refuses the others'.
func TestBuildArchMatchesFIT(t *testing.T) {
	for goarch, arch := range map[string]string{"amd64": "amd64", "arm64": "arm64", "arm": "armv7", "mipsle": "mipsle"} {
		if got := buildArchOf(goarch); got != arch {
			t.Errorf("GOARCH %s: build arch %q, want %q", goarch, got, arch)
		}
		info, err := fwimage.ParseFIT(fittest.FIT("board", arch, "v2", []byte("kernel"), []byte("ramdisk")))
		if err != nil {
			t.Fatalf("%s FIT: %v", arch, err)
		}
		if err := fwimage.CheckTarget(info, "board", buildArchOf(goarch)); err != nil {
			t.Errorf("GOARCH %s refuses its own %s FIT: %v", goarch, arch, err)
		}
		for _, other := range []string{"amd64", "arm64", "arm", "mipsle", "mips"} {
			if other == goarch {
				continue
			}
			if err := fwimage.CheckTarget(info, "board", buildArchOf(other)); !errors.Is(err, fwimage.ErrWrongTarget) {
				t.Errorf("GOARCH %s accepts the %s FIT: %v", other, arch, err)
			}
		}
	}
}
