// Command uroute-modules lays out a kernel's modules for uroute's image
// (scripts/fetch-kernel.sh runs it on the host): the wanted modules and
// everything they depend on, uncompressed, in a flat directory with a
// load-order file that uinit loads them by (see firmware/kmod).
//
//	uroute-modules -moddir /lib/modules/RELEASE -out DIR [MODULE...]
//
// MODULE defaults to kmod.RouterModules. DIR is emptied first. The last
// line on stdout is "modules=N builtin=A,B absent=C,D": the modules
// written, and the wanted ones that are built into the kernel or missing
// from it.
package main

import (
	"compress/gzip"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/uroute/uroute/firmware/kmod"
)

func main() {
	moddir := flag.String("moddir", "", "the kernel's module tree, /lib/modules/RELEASE (with kernel/ and modules.builtin)")
	out := flag.String("out", "", "directory to write the modules and load-order into (emptied first)")
	flag.Parse()
	if *moddir == "" || *out == "" {
		flag.Usage()
		os.Exit(2)
	}
	wanted := flag.Args()
	if len(wanted) == 0 {
		wanted = kmod.RouterModules
	}
	summary, err := layout(*moddir, *out, wanted)
	if err != nil {
		fmt.Fprintf(os.Stderr, "uroute-modules: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(summary)
}

// layout writes the wanted modules and their dependencies into out and
// returns the summary line.
func layout(moddir, out string, wanted []string) (string, error) {
	src := map[string]string{} // canonical name -> file in moddir
	err := filepath.WalkDir(filepath.Join(moddir, "kernel"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && strings.Contains(d.Name(), ".ko") {
			src[kmod.Canon(d.Name())] = p
		}
		return nil
	})
	if err != nil {
		return "", err
	}
	builtin := map[string]bool{}
	if b, err := os.ReadFile(filepath.Join(moddir, "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(b)) {
			builtin[kmod.Canon(l)] = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	if err := os.RemoveAll(out); err != nil {
		return "", err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return "", err
	}
	modules := map[string]bool{}
	for m := range src {
		modules[m] = true
	}
	placed := map[string]string{} // canonical name -> file name in out
	set := kmod.Set{
		Modules: modules,
		Builtin: builtin,
		Soft:    kmod.SoftDeps,
		// A module is placed (uncompressed) when it is first visited,
		// and its dependencies read from the copy.
		Depends: func(m string) ([]string, error) {
			name, err := place(src[m], out)
			if err != nil {
				return nil, err
			}
			placed[m] = name
			info, err := kmod.ReadInfo(filepath.Join(out, name))
			return info.Depends, err
		},
	}
	plan, err := set.Resolve(wanted)
	if err != nil {
		return "", err
	}
	files := make([]string, len(plan.Order))
	for i, m := range plan.Order {
		files[i] = placed[m]
	}
	if err := os.WriteFile(filepath.Join(out, kmod.LoadOrderFile), []byte(kmod.FormatLoadOrder(files)), 0o644); err != nil {
		return "", err
	}
	return fmt.Sprintf("modules=%d builtin=%s absent=%s", len(files), list(plan.Builtin), list(plan.Absent)), nil
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ",")
}

// place copies a module into dir uncompressed (init uses finit_module
// without relying on CONFIG_MODULE_DECOMPRESS) and returns its file name.
func place(file, dir string) (string, error) {
	base := filepath.Base(file)
	var decompress []string
	switch {
	case strings.HasSuffix(base, ".ko.xz"):
		decompress = []string{"xz", "-dc", file}
	case strings.HasSuffix(base, ".ko.zst"):
		decompress = []string{"zstd", "-qdc", file}
	}
	name := base[:strings.Index(base, ".ko")+len(".ko")]
	dst, err := os.Create(filepath.Join(dir, name))
	if err != nil {
		return "", err
	}
	defer dst.Close()
	if decompress != nil {
		cmd := exec.Command(decompress[0], decompress[1:]...)
		cmd.Stdout, cmd.Stderr = dst, os.Stderr
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("%s: %w", strings.Join(decompress, " "), err)
		}
		return name, dst.Close()
	}
	f, err := os.Open(file)
	if err != nil {
		return "", err
	}
	defer f.Close()
	var r io.Reader = f
	if strings.HasSuffix(base, ".ko.gz") {
		zr, err := gzip.NewReader(f)
		if err != nil {
			return "", fmt.Errorf("%s: %w", file, err)
		}
		r = zr
	}
	if _, err := io.Copy(dst, r); err != nil {
		return "", fmt.Errorf("%s: %w", file, err)
	}
	return name, dst.Close()
}
