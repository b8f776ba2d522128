// Package fittest builds FIT images as scripts/build-fit.sh lays them out,
// in Go, for tests that must not depend on mkimage and dtc.
package fittest

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
)

// U-Boot's arch names for build-image.sh's architectures.
var fitArch = map[string]string{"arm64": "arm64", "armv7": "arm", "mipsle": "mips", "amd64": "x86_64"}

// FIT returns a FIT with a kernel and a ramdisk image, each with a sha256
// hash, and the uroute,* properties build-fit.sh writes.
func FIT(board, arch, version string, kernel, ramdisk []byte) []byte {
	var w writer
	w.begin("")
	w.str("description", "uroute "+version+" for "+board+" ("+arch+")")
	w.str("uroute,board", board)
	w.str("uroute,arch", arch)
	w.str("uroute,version", version)
	w.begin("images")
	for _, img := range []struct {
		name string
		data []byte
	}{{"kernel", kernel}, {"ramdisk", ramdisk}} {
		w.begin(img.name)
		w.prop("data", img.data)
		w.str("arch", fitArch[arch])
		w.begin("hash-1")
		w.str("algo", "sha256")
		sum := sha256.Sum256(img.data)
		w.prop("value", sum[:])
		w.end()
		w.end()
	}
	w.end()
	w.begin("configurations")
	w.str("default", "uroute")
	w.begin("uroute")
	w.str("kernel", "kernel")
	w.str("ramdisk", "ramdisk")
	w.end()
	w.end()
	w.end()
	return w.blob()
}

const (
	fdtMagic     = 0xd00dfeed
	fdtBeginNode = 1
	fdtEndNode   = 2
	fdtProp      = 3
	fdtEnd       = 9
	fdtHeaderLen = 40
)

// writer lays out an FDT blob as dtc does.
type writer struct {
	structs, strs bytes.Buffer
	off           map[string]uint32
}

func (w *writer) u32(v uint32) { _ = binary.Write(&w.structs, binary.BigEndian, v) }
func (w *writer) pad() {
	for w.structs.Len()%4 != 0 {
		w.structs.WriteByte(0)
	}
}
func (w *writer) begin(name string) {
	w.u32(fdtBeginNode)
	w.structs.WriteString(name + "\x00")
	w.pad()
}
func (w *writer) end() { w.u32(fdtEndNode) }
func (w *writer) prop(name string, v []byte) {
	if w.off == nil {
		w.off = map[string]uint32{}
	}
	o, ok := w.off[name]
	if !ok {
		o = uint32(w.strs.Len())
		w.off[name] = o
		w.strs.WriteString(name + "\x00")
	}
	w.u32(fdtProp)
	w.u32(uint32(len(v)))
	w.u32(o)
	w.structs.Write(v)
	w.pad()
}
func (w *writer) str(name, v string) { w.prop(name, []byte(v+"\x00")) }

func (w *writer) blob() []byte {
	w.u32(fdtEnd)
	rsv := make([]byte, 16) // empty memory reservation map
	offRsv := uint32(fdtHeaderLen)
	offStruct := offRsv + uint32(len(rsv))
	offStrings := offStruct + uint32(w.structs.Len())
	total := offStrings + uint32(w.strs.Len())
	h := make([]byte, fdtHeaderLen)
	for i, v := range []uint32{fdtMagic, total, offStruct, offStrings, offRsv, 17, 16, 0, uint32(w.strs.Len()), uint32(w.structs.Len())} {
		binary.BigEndian.PutUint32(h[4*i:], v)
	}
	out := append(h, rsv...)
	out = append(out, w.structs.Bytes()...)
	return append(out, w.strs.Bytes()...)
}
