package main

import (
	"errors"
	"fmt"
	"os"
	"path"

	"golang.org/x/sys/unix"

	"github.com/uroute/uroute/firmware/kmod"
)

// The image's modules live in their own directory: u-root's init loads
// every /lib/modules/*.ko in name order before it runs uinit, which fails
// for every module whose dependencies sort after it (about 160 "Unknown
// symbol" lines on the console per boot). Out of its reach, they are
// loaded once, here, in dependency order.
const (
	modulesDir = "/lib/modules/uroute"
	loadOrder  = modulesDir + "/" + kmod.LoadOrderFile
)

// loadModules loads the modules in /lib/modules/uroute/load-order (written
// by firmware/kmod at build time, each module after its dependencies) with
// finit_module(2). A module that is already loaded or built in (EEXIST) is
// skipped quietly. Without a load-order file there is nothing to do.
func (b *boot) loadModules() error {
	text, err := os.ReadFile(b.path(loadOrder))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names, perr := kmod.ParseLoadOrder(string(text))
	errs := []error{perr}
	failed := 0
	for _, name := range names {
		if err := b.loadModule(b.path(path.Join(modulesDir, name))); err != nil {
			failed++
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	err = errors.Join(errs...)
	if err != nil && failed > 0 {
		return fmt.Errorf("%d of %d modules failed: %w", failed, len(names), err)
	}
	return err
}

func (b *boot) loadModule(file string) error {
	f, err := os.Open(file)
	if err != nil {
		return err
	}
	defer f.Close()
	err = b.Sys.FinitModule(int(f.Fd()), "", 0)
	if errors.Is(err, unix.EEXIST) {
		return nil
	}
	return err
}
