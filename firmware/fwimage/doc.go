// Package fwimage is uroute's firmware image and boot state, shared by the
// build (cmd/uroute-fw, on the host) and the upgrade code in the image
// (uroute-uinit upgrade):
//
//   - FIT images (U-Boot's flattened image tree) checked without U-Boot:
//     structure, every sha256 hash, and the architecture and board they
//     are for (fit.go);
//   - the ed25519 signature trailer appended to a FIT by
//     scripts/sign-image.sh, and its check (sign.go);
//   - U-Boot's environment block (CRC32 + "name=value\0" list), kept twice
//     on the boot disk, which the U-Boot boot script
//     (firmware/uboot/boot.cmd) and the upgrade code both read and write
//     (bootenv.go);
//   - the A/B state held in that environment (state.go);
//   - a self-decompressing kernel ELF (MIPS) as the raw binary and
//     load/entry addresses a FIT kernel image needs (kernelelf.go).
//
// docs/upgrade.md explains the design.
package fwimage

import "errors"

// Errors; callers test them with errors.Is.
var (
	// ErrFIT: not a well-formed FIT image, or one whose hashes fail.
	ErrFIT = errors.New("fwimage: bad FIT image")
	// ErrWrongTarget: a good FIT, but for another board or architecture.
	ErrWrongTarget = errors.New("fwimage: image is for another target")
	// ErrSignature: no signature trailer, an unknown key, or a signature
	// that does not verify.
	ErrSignature = errors.New("fwimage: signature check failed")
	// ErrEnv: a boot environment copy that is damaged (bad CRC) or malformed.
	ErrEnv = errors.New("fwimage: bad boot environment")
	// ErrKernelELF: a kernel ELF that cannot become a raw FIT kernel image
	// (not an executable ELF, or not exactly one loadable segment).
	ErrKernelELF = errors.New("fwimage: kernel ELF not loadable as a raw image")
)
