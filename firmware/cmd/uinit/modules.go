package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

const (
	modulesDir = "/lib/modules"
	loadOrder  = "/lib/modules/load-order"
)

// parseLoadOrder reads a load-order file: one .ko file name per line, in
// the order to load them. Blank lines and lines starting with '#' are
// skipped. A name with a directory part is rejected, so every module comes
// from /lib/modules.
func parseLoadOrder(text string) ([]string, error) {
	var names []string
	var errs []error
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if strings.ContainsRune(line, '/') || line == "." || line == ".." || path.Ext(line) != ".ko" {
			errs = append(errs, fmt.Errorf("load-order line %d: %q is not a .ko file name", n, line))
			continue
		}
		names = append(names, line)
	}
	if err := sc.Err(); err != nil {
		errs = append(errs, err)
	}
	return names, errors.Join(errs...)
}

// loadModules loads the modules in /lib/modules/load-order with
// finit_module(2). A module that is already loaded or built in (EEXIST) is
// skipped quietly. Without a load-order file there is nothing to do.
//
// u-root's init has by then already tried every /lib/modules/*.ko in
// alphabetical order; the ones whose dependencies came later failed there
// and load here, the rest answer EEXIST.
func (b *boot) loadModules() error {
	text, err := os.ReadFile(b.path(loadOrder))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	names, perr := parseLoadOrder(string(text))
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
