// Command uroute-fw is the build host's side of uroute's firmware images
// (package fwimage; docs/upgrade.md):
//
//	uroute-fw keygen PRIVATE PUBLIC    make an ed25519 signing key pair
//	                                   (no-op if PRIVATE exists)
//	uroute-fw sign PRIVATE IN.itb OUT  check the FIT and append the
//	                                   signature trailer
//	uroute-fw verify PUBLIC FILE       check a signed image (signature,
//	                                   structure, hashes); print its info
//	uroute-fw info FILE.itb            check an unsigned FIT; print its info
//	uroute-fw env OUT                  the env partition of a freshly
//	                                   flashed router (slot A, 3 attempts)
//	uroute-fw rawkernel ELF OUT        the raw kernel of a one-segment
//	                                   kernel ELF (objcopy -O binary);
//	                                   prints "LOAD ENTRY" in hex for the FIT
//
// scripts/sign-image.sh, scripts/make-flash.sh and scripts/build-fit.sh
// run it.
package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"

	"github.com/uroute/uroute/firmware/fwimage"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "uroute-fw: %v\n", err)
		os.Exit(1)
	}
}

func usage() error {
	return errors.New("usage: uroute-fw keygen PRIV PUB | sign PRIV IN OUT | verify PUB FILE | info FILE | env OUT | rawkernel ELF OUT")
}

func run(args []string) error {
	if len(args) == 0 {
		return usage()
	}
	switch cmd, a := args[0], args[1:]; {
	case cmd == "keygen" && len(a) == 2:
		return keygen(a[0], a[1])
	case cmd == "sign" && len(a) == 3:
		return sign(a[0], a[1], a[2])
	case cmd == "verify" && len(a) == 2:
		return verify(a[0], a[1])
	case cmd == "info" && len(a) == 1:
		b, err := os.ReadFile(a[0])
		if err != nil {
			return err
		}
		info, err := fwimage.ParseFIT(b)
		if err != nil {
			return fmt.Errorf("%s: %w", a[0], err)
		}
		return printJSON(info)
	case cmd == "env" && len(a) == 1:
		return factoryEnv(a[0])
	case cmd == "rawkernel" && len(a) == 2:
		return rawKernel(a[0], a[1])
	default:
		return usage()
	}
}

func keygen(privPath, pubPath string) error {
	if _, err := os.Stat(privPath); err == nil {
		return nil
	} else if !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	if err := os.WriteFile(pubPath, []byte(hex.EncodeToString(pub)+"\n"), 0o644); err != nil {
		return err
	}
	return os.WriteFile(privPath, []byte(hex.EncodeToString(priv.Seed())+"\n"), 0o600)
}

func sign(privPath, in, out string) error {
	text, err := os.ReadFile(privPath)
	if err != nil {
		return err
	}
	priv, err := fwimage.ParsePrivateKey(string(text))
	if err != nil {
		return fmt.Errorf("%s: %w", privPath, err)
	}
	fit, err := os.ReadFile(in)
	if err != nil {
		return err
	}
	signed, err := fwimage.Sign(fit, priv)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	return os.WriteFile(out, signed, 0o644)
}

func verify(pubPath, file string) error {
	text, err := os.ReadFile(pubPath)
	if err != nil {
		return err
	}
	keys, err := fwimage.ParsePublicKeys(string(text))
	if err != nil {
		return fmt.Errorf("%s: %w", pubPath, err)
	}
	signed, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	fit, err := fwimage.VerifySigned(signed, keys)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	info, err := fwimage.ParseFIT(fit)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	return printJSON(info)
}

func factoryEnv(out string) error {
	block, err := fwimage.FactoryEnv().Encode()
	if err != nil {
		return err
	}
	// Copy 0 is the factory state; copy 1 is erased (all 0xFF fails its
	// CRC), so the first write goes there.
	erased := make([]byte, fwimage.EnvSize)
	for i := range erased {
		erased[i] = 0xff
	}
	return os.WriteFile(out, append(block, erased...), 0o644)
}

func printJSON(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	fmt.Println(string(b))
	return nil
}

// rawKernel writes the loadable segment of the kernel ELF in to out and
// prints its load and entry addresses, as build-fit.sh puts them in the
// FIT (one 32-bit cell each: #address-cells = <1>).
func rawKernel(in, out string) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	k, err := fwimage.KernelFromELF(f)
	if err != nil {
		return fmt.Errorf("%s: %w", in, err)
	}
	if k.Load > 0xffffffff || k.Entry > 0xffffffff {
		return fmt.Errorf("%s: load %#x or entry %#x needs more than the FIT's one 32-bit address cell", in, k.Load, k.Entry)
	}
	if err := os.WriteFile(out, k.Data, 0o644); err != nil {
		return err
	}
	_, err = fmt.Printf("%#x %#x\n", k.Load, k.Entry)
	return err
}
