// Package kmod decides which kernel modules a uroute image carries and in
// which order its init loads them: a module after every module it depends
// on, as finit_module(2) needs (there is no modprobe in the image to
// resolve dependencies at load time).
//
// The dependencies come from each module's .modinfo section (depends=,
// what modinfo -F depends prints), plus soft dependencies the kernel loads
// on demand through the crypto API and which .modinfo does not show
// (SoftDeps). scripts/fetch-kernel.sh lays a Debian kernel's modules out
// for the image with it (firmware/cmd/uroute-modules), writing the
// load-order file that uinit reads back with ParseLoadOrder: one
// implementation of the order for the build and the boot.
package kmod

import (
	"bufio"
	"debug/elf"
	"errors"
	"fmt"
	"path"
	"strings"
)

// RouterModules are the modules the image's init loads, where the kernel
// has them as modules. crc32c_generic is listed because ext4 and jbd2 only
// soft-depend on "crc32c" (a crypto alias .modinfo's depends= does not
// show). The flash stack (mtd ... jffs2) is absent from some flavours
// (cloud-amd64, arm64, armmp): such modules are reported, not an error.
var RouterModules = []string{"crc32c_generic", "virtio_pci", "virtio_mmio", "virtio_net", "virtio_blk",
	"af_packet", "8021q", "bridge", "ext4", "mtd", "mtdblock", "block2mtd", "ubi", "ubifs", "jffs2"}

// SoftDeps are dependencies .modinfo does not show, loaded before the
// module where the kernel has them as modules. UBIFS's init allocates its
// lzo, zstd and deflate compressors through the crypto API and fails
// without any of them ("cannot initialize compressor zstd, error -2"): on
// Debian bookworm crypto/zstd is a module everywhere and crypto/deflate on
// 4kc-malta.
var SoftDeps = map[string][]string{"ubifs": {"lzo", "zstd", "deflate"}}

// Errors of Resolve.
var (
	ErrCycle   = errors.New("dependency cycle")
	ErrMissing = errors.New("dependency found neither as a module nor built in")
)

// Canon is a module's name as the kernel compares it: file names use '-'
// where module names (and depends=) use '_'; a file's .ko, .ko.xz, ...
// and directory are dropped.
func Canon(name string) string {
	name = path.Base(name)
	if i := strings.Index(name, ".ko"); i >= 0 {
		name = name[:i]
	}
	return strings.ReplaceAll(name, "-", "_")
}

// Info is what a module's .modinfo says about it.
type Info struct {
	Name     string   // name=
	Depends  []string // depends=, canonical names
	Vermagic string   // vermagic=: the kernel release first
}

// ParseModinfo decodes a .modinfo section: NUL-separated key=value pairs.
func ParseModinfo(data []byte) Info {
	var in Info
	for _, kv := range strings.Split(string(data), "\x00") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			continue
		}
		switch k {
		case "name":
			in.Name = v
		case "vermagic":
			in.Vermagic = v
		case "depends":
			for _, d := range strings.Split(v, ",") {
				if d = strings.TrimSpace(d); d != "" {
					in.Depends = append(in.Depends, Canon(d))
				}
			}
		}
	}
	return in
}

// ReadInfo reads an uncompressed module's .modinfo.
func ReadInfo(file string) (Info, error) {
	f, err := elf.Open(file)
	if err != nil {
		return Info{}, fmt.Errorf("module %s: %w", file, err)
	}
	defer f.Close()
	s := f.Section(".modinfo")
	if s == nil {
		return Info{}, fmt.Errorf("module %s: no .modinfo section", file)
	}
	data, err := s.Data()
	if err != nil {
		return Info{}, fmt.Errorf("module %s: .modinfo: %w", file, err)
	}
	return ParseModinfo(data), nil
}

// Set is the modules a kernel has: by canonical name, as modules or built
// in.
type Set struct {
	Modules map[string]bool // available as loadable modules
	Builtin map[string]bool // built into the kernel (modules.builtin)
	// Depends returns a module's hard dependencies (canonical names).
	Depends func(name string) ([]string, error)
	// Soft are extra dependencies loaded first where they are modules.
	Soft map[string][]string
}

// Plan is what Resolve decided.
type Plan struct {
	Order   []string // modules to load, each after its dependencies
	Builtin []string // wanted modules built into the kernel
	Absent  []string // wanted modules the kernel has in neither form
}

// Resolve orders the wanted modules and their dependencies: depth-first,
// a module after everything it depends on, each once, in the order the
// wanted list first reaches it. A hard dependency that is neither a module
// nor built in is an error (ErrMissing), as is a cycle (ErrCycle).
func (s Set) Resolve(wanted []string) (Plan, error) {
	var p Plan
	const (
		active = 1
		done   = 2
	)
	state := map[string]int{}
	var visit func(m string, chain []string) error
	visit = func(m string, chain []string) error {
		switch state[m] {
		case done:
			return nil
		case active:
			return fmt.Errorf("%w: %s", ErrCycle, strings.Join(append(chain, m), " -> "))
		}
		state[m] = active
		chain = append(chain, m)
		deps, err := s.Depends(m)
		if err != nil {
			return err
		}
		for _, d := range deps {
			d = Canon(d)
			switch {
			case s.Modules[d]:
				if err := visit(d, chain); err != nil {
					return err
				}
			case s.Builtin[d]:
			default:
				return fmt.Errorf("%s needs %s: %w", m, d, ErrMissing)
			}
		}
		for _, d := range s.Soft[m] {
			if d = Canon(d); s.Modules[d] {
				if err := visit(d, chain); err != nil {
					return err
				}
			}
		}
		state[m] = done
		p.Order = append(p.Order, m)
		return nil
	}
	for _, w := range wanted {
		w = Canon(w)
		switch {
		case s.Modules[w]:
			if err := visit(w, nil); err != nil {
				return Plan{}, err
			}
		case s.Builtin[w]:
			p.Builtin = append(p.Builtin, w)
		default:
			p.Absent = append(p.Absent, w)
		}
	}
	return p, nil
}

// LoadOrderFile is the load-order file's name in the image's module
// directory.
const LoadOrderFile = "load-order"

// FormatLoadOrder is the load-order file for the given module file names.
func FormatLoadOrder(files []string) string {
	var b strings.Builder
	for _, f := range files {
		b.WriteString(f)
		b.WriteByte('\n')
	}
	return b.String()
}

// ParseLoadOrder reads a load-order file: one .ko file name per line, in
// the order to load them. Blank lines and lines starting with '#' are
// skipped. A name with a directory part is refused, so that every module
// comes from the module directory; the other lines are still returned.
func ParseLoadOrder(text string) ([]string, error) {
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
