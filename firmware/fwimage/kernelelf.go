package fwimage

import (
	"debug/elf"
	"fmt"
	"io"
)

// RawKernel is a kernel ELF as U-Boot loads it from a FIT: the bytes of
// its one loadable segment, copied to Load, and jumped to at Entry.
type RawKernel struct {
	Data  []byte
	Load  uint64
	Entry uint64
}

// KernelFromELF extracts what "objcopy -O binary" would from a kernel ELF
// with one PT_LOAD segment, such as Debian's 4kc-malta vmlinuz (a
// self-decompressing kernel). It exists because the build host's binutils
// need not read MIPS ELF (Debian's amd64 objcopy does not), and so that
// the FIT's load and entry addresses are read from the kernel, not typed.
//
// Only the segment's file bytes are returned: its memory size beyond them
// is BSS, which the kernel's own startup code clears (U-Boot does not).
func KernelFromELF(r io.ReaderAt) (RawKernel, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return RawKernel{}, fmt.Errorf("%w: %v", ErrKernelELF, err)
	}
	defer f.Close()
	if f.Type != elf.ET_EXEC {
		return RawKernel{}, fmt.Errorf("%w: ELF type %v, want ET_EXEC", ErrKernelELF, f.Type)
	}
	var load *elf.Prog
	for _, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Filesz == 0 {
			continue
		}
		if load != nil {
			// Several segments would need the gaps between them filled
			// (objcopy pads them); no kernel we boot has them.
			return RawKernel{}, fmt.Errorf("%w: more than one loadable segment (at %#x and %#x)", ErrKernelELF, load.Paddr, p.Paddr)
		}
		load = p
	}
	if load == nil {
		return RawKernel{}, fmt.Errorf("%w: no loadable segment", ErrKernelELF)
	}
	if f.Entry < load.Vaddr || f.Entry >= load.Vaddr+load.Filesz {
		return RawKernel{}, fmt.Errorf("%w: entry %#x is outside the segment [%#x, %#x)", ErrKernelELF, f.Entry, load.Vaddr, load.Vaddr+load.Filesz)
	}
	data := make([]byte, load.Filesz)
	if _, err := load.ReadAt(data, 0); err != nil {
		return RawKernel{}, fmt.Errorf("%w: reading the segment: %v", ErrKernelELF, err)
	}
	// The FIT's load address is where the bytes go (the physical address
	// objcopy uses, equal to the virtual one in a KSEG0 kernel); the entry
	// is the virtual address the CPU jumps to, moved with them.
	return RawKernel{Data: data, Load: load.Paddr, Entry: f.Entry - load.Vaddr + load.Paddr}, nil
}
