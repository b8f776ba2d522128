package fwimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// elfSeg is one program header of a synthetic ELF.
type elfSeg struct {
	typ          uint32
	vaddr, paddr uint32
	data         []byte
	memsz        uint32 // >= len(data): the rest is BSS
}

// mipsELF lays out a 32-bit little-endian MIPS ELF as the 4kc-malta
// vmlinuz is laid out: header, program headers, then each segment's bytes.
func mipsELF(typ uint16, entry uint32, segs ...elfSeg) []byte {
	const ehsize, phentsize = 52, 32
	var b bytes.Buffer
	le := binary.LittleEndian
	b.Write([]byte{0x7f, 'E', 'L', 'F', 1 /* 32-bit */, 1 /* LE */, 1, 0})
	b.Write(make([]byte, 8))
	for _, v := range []any{typ, uint16(8) /* EM_MIPS */, uint32(1), entry,
		uint32(ehsize), uint32(0), uint32(0), uint16(ehsize), uint16(phentsize),
		uint16(len(segs)), uint16(40), uint16(0), uint16(0)} {
		_ = binary.Write(&b, le, v)
	}
	off := uint32(ehsize + phentsize*len(segs))
	for _, s := range segs {
		for _, v := range []uint32{s.typ, off, s.vaddr, s.paddr, uint32(len(s.data)), s.memsz, 7, 4} {
			_ = binary.Write(&b, le, v)
		}
		off += uint32(len(s.data))
	}
	for _, s := range segs {
		b.Write(s.data)
	}
	return b.Bytes()
}

const (
	etExec = 2
	etRel  = 1
	ptLoad = 1
	ptNote = 4
)

func TestKernelFromELF(t *testing.T) {
	code := []byte("self-decompressing kernel")
	note := elfSeg{typ: ptNote, data: []byte("note")}
	seg := elfSeg{typ: ptLoad, vaddr: 0x810f0000, paddr: 0x810f0000, data: code, memsz: 0x1000}
	k, err := KernelFromELF(bytes.NewReader(mipsELF(etExec, 0x810f0004, note, seg)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(k.Data, code) || k.Load != 0x810f0000 || k.Entry != 0x810f0004 {
		t.Fatalf("got %q load %#x entry %#x; want %q load 0x810f0000 entry 0x810f0004", k.Data, k.Load, k.Entry, code)
	}
	// Loaded at its physical address, entered at its virtual one moved
	// with it (objcopy -O binary writes the bytes meant for LMA).
	moved := seg
	moved.paddr = 0x010f0000
	if k, err := KernelFromELF(bytes.NewReader(mipsELF(etExec, 0x810f0004, moved))); err != nil || k.Load != 0x010f0000 || k.Entry != 0x010f0004 {
		t.Fatalf("VMA != LMA: load %#x entry %#x, %v; want 0x10f0000 0x10f0004", k.Load, k.Entry, err)
	}
	// An empty PT_LOAD (a stack or BSS-only segment) is not a second one.
	bss := elfSeg{typ: ptLoad, vaddr: 0x82000000, paddr: 0x82000000, memsz: 0x100}
	if _, err := KernelFromELF(bytes.NewReader(mipsELF(etExec, 0x810f0000, seg, bss))); err != nil {
		t.Fatalf("a BSS-only segment besides: %v", err)
	}

	second := elfSeg{typ: ptLoad, vaddr: 0x82000000, paddr: 0x82000000, data: []byte("more"), memsz: 4}
	for name, elf := range map[string][]byte{
		"two loadable segments": mipsELF(etExec, 0x810f0000, seg, second),
		"no loadable segment":   mipsELF(etExec, 0x810f0000, note),
		"entry outside":         mipsELF(etExec, 0x810f0000+uint32(len(code)), seg),
		"relocatable object":    mipsELF(etRel, 0x810f0000, seg),
		"not an ELF":            []byte("MZ this is no ELF at all, not even close"),
		"truncated":             mipsELF(etExec, 0x810f0000, seg)[:60],
	} {
		if _, err := KernelFromELF(bytes.NewReader(elf)); !errors.Is(err, ErrKernelELF) {
			t.Errorf("%s: %v, want ErrKernelELF", name, err)
		}
	}
}

// TestMipsleFIT builds the mipsle FIT with scripts/build-fit.sh from the
// cached 4kc-malta kernel (scripts/fetch-kernel.sh), twice, and checks
// what a MIPS router's U-Boot and our upgrade code rely on: the same
// bytes from both builds, structure and hashes (ParseFIT), the target,
// and a raw kernel at the ELF's own load and entry addresses.
func TestMipsleFIT(t *testing.T) {
	cache := os.Getenv("UROUTE_CACHE")
	if cache == "" {
		home, _ := os.UserHomeDir()
		cache = filepath.Join(home, ".cache", "uroute")
	}
	vmlinuz := filepath.Join(cache, "kernel-mipsle", "vmlinuz")
	f, err := os.Open(vmlinuz)
	if err != nil {
		t.Skipf("no cached mipsle kernel (%v): scripts/fetch-kernel.sh mipsle fetches it", err)
	}
	defer f.Close()
	want, err := KernelFromELF(f)
	if err != nil {
		t.Fatalf("%s: %v", vmlinuz, err)
	}
	if _, err := exec.LookPath("mkimage"); err != nil {
		t.Fatal("mkimage missing: scripts/deps.sh installs u-boot-tools")
	}

	dir := t.TempDir()
	cpio := filepath.Join(dir, "initramfs.cpio.gz")
	ramdisk := bytes.Repeat([]byte("initramfs "), 1000)
	if err := os.WriteFile(cpio, ramdisk, 0o644); err != nil {
		t.Fatal(err)
	}
	var fits [2][]byte
	for i := range fits {
		out := filepath.Join(dir, "router.itb")
		cmd := exec.Command("../../scripts/build-fit.sh", "mipsle", cpio, out)
		cmd.Env = append(os.Environ(), "KERNEL="+vmlinuz, "BOARD=ubnt-edgerouter-x", "VERSION=v-test")
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("build-fit.sh mipsle: %v\n%s", err, b)
		}
		if fits[i], err = os.ReadFile(out); err != nil {
			t.Fatal(err)
		}
		os.Remove(out)
	}
	if !bytes.Equal(fits[0], fits[1]) {
		t.Fatalf("two builds differ: %d and %d bytes", len(fits[0]), len(fits[1]))
	}
	fit := fits[0]

	info, err := ParseFIT(fit)
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckTarget(info, "ubnt-edgerouter-x", "mipsle"); err != nil {
		t.Fatalf("%+v: %v", info, err)
	}
	if info.Version != "v-test" {
		t.Errorf("version %q, want v-test", info.Version)
	}
	root, err := parseFDT(fit)
	if err != nil {
		t.Fatal(err)
	}
	kernel := root.child("images").child("kernel")
	for prop, want := range map[string]string{"arch": "mips", "os": "linux", "type": "kernel", "compression": "none"} {
		if got := kernel.str(prop); got != want {
			t.Errorf("kernel %s = %q, want %q", prop, got, want)
		}
	}
	for prop, want := range map[string]uint64{"load": want.Load, "entry": want.Entry} {
		v := kernel.Props[prop]
		if len(v) != 4 || uint64(binary.BigEndian.Uint32(v)) != want {
			t.Errorf("kernel %s = %x, want %#x (the ELF's)", prop, v, want)
		}
	}
	if !bytes.Equal(kernel.Props["data"], want.Data) {
		t.Errorf("kernel data: %d bytes, not the ELF's loadable segment (%d bytes)", len(kernel.Props["data"]), len(want.Data))
	}
	if got := root.child("images").child("ramdisk").Props["data"]; !bytes.Equal(got, ramdisk) {
		t.Errorf("ramdisk: %d bytes, not the initramfs given (%d)", len(got), len(ramdisk))
	}
	conf := root.child("configurations").child("uroute")
	if _, ok := conf.Props["fdt"]; ok || root.child("images").child("fdt") != nil {
		t.Error("an fdt in the FIT: the malta kernel has its DTB built in")
	}
}
