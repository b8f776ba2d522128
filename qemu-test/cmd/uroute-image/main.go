// Command uroute-image prints the path of an image in the content-addressed
// cache ($UROUTE_CACHE/images; see qemu.BuildImage), building it first
// unless an image with the same inputs is there:
//
//	uroute-image [-key] [-no-modules] ARCH PROFILE.toml
//
// The kernel modules are those of ARCH's cached kernel
// ($UROUTE_CACHE/kernel-ARCH); -no-modules leaves them out (the image of a
// router whose kernel has those drivers built in; scripts/image-sizes.sh
// measures it). With -key it prints the key and path without building. scripts/test.sh uses it so that an image is built once
// per set of inputs, not once per run. Run it from the repository root.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/uroute/uroute/qemu-test/qemu"
)

func main() {
	keyOnly := flag.Bool("key", false, "print the key and the path, build nothing")
	noModules := flag.Bool("no-modules", false, "leave the kernel's modules out")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: uroute-image [-key] [-no-modules] ARCH PROFILE.toml")
		os.Exit(2)
	}
	m, err := qemu.MachineByName(flag.Arg(0))
	if err != nil {
		fail(err)
	}
	profile, err := filepath.Abs(flag.Arg(1))
	if err != nil {
		fail(err)
	}
	v := qemu.Variant{NoModules: *noModules}
	if *keyOnly {
		key, path, err := v.KeyPath(".", m, profile)
		if err != nil {
			fail(err)
		}
		fmt.Println(key, path)
		return
	}
	img, err := qemu.BuildImageVariant(context.Background(), ".", m, profile, v, os.Stderr)
	if err != nil {
		fail(err)
	}
	state := "cached"
	if img.Built {
		state = "built in " + img.Took.Round(1e8).String()
	}
	fmt.Fprintf(os.Stderr, "uroute-image: %s (%s)\n", img.Path, state)
	fmt.Println(img.Path)
}

func fail(err error) {
	fmt.Fprintf(os.Stderr, "uroute-image: %v\n", err)
	os.Exit(1)
}
