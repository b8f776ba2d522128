package fwimage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"sort"
	"strings"
)

// EnvSize is the size of one copy of the boot environment: U-Boot's
// non-redundant env_t layout, a CRC32 of the data followed by the data,
// "name=value\0" entries ending with an empty one. U-Boot's boot script
// reads and writes a copy with "env import -c" and "env export -c -s
// 0x10000", so this size appears in firmware/uboot/boot.cmd too.
const EnvSize = 0x10000

// EnvCopies is how many copies the env partition holds; see EnvStore.
const EnvCopies = 2

// Env is one environment's variables.
type Env map[string]string

// Encode renders e as an EnvSize block with its CRC. Names are sorted, as
// U-Boot's own export sorts them, so one Env always gives the same bytes.
// The CRC is little-endian: U-Boot stores it in the CPU's byte order, and
// every uroute target with U-Boot (arm, arm64, mipsle) is little-endian.
func (e Env) Encode() ([]byte, error) {
	names := make([]string, 0, len(e))
	for k := range e {
		names = append(names, k)
	}
	sort.Strings(names)
	var data bytes.Buffer
	for _, k := range names {
		v := e[k]
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return nil, fmt.Errorf("%w: variable %q=%q cannot be stored", ErrEnv, k, v)
		}
		data.WriteString(k + "=" + v + "\x00")
	}
	data.WriteByte(0)
	if data.Len() > EnvSize-4 {
		return nil, fmt.Errorf("%w: %d bytes of variables, the block holds %d", ErrEnv, data.Len(), EnvSize-4)
	}
	block := make([]byte, EnvSize)
	copy(block[4:], data.Bytes())
	binary.LittleEndian.PutUint32(block, crc32.ChecksumIEEE(block[4:]))
	return block, nil
}

// DecodeEnv parses one EnvSize block, refusing it if its CRC does not
// match (a copy torn by a power cut, or never written).
func DecodeEnv(block []byte) (Env, error) {
	if len(block) != EnvSize {
		return nil, fmt.Errorf("%w: block is %d bytes, want %d", ErrEnv, len(block), EnvSize)
	}
	if got, want := crc32.ChecksumIEEE(block[4:]), binary.LittleEndian.Uint32(block); got != want {
		return nil, fmt.Errorf("%w: CRC %08x, stored %08x", ErrEnv, got, want)
	}
	e := Env{}
	data := block[4:]
	for len(data) > 0 && data[0] != 0 {
		end := bytes.IndexByte(data, 0)
		if end < 0 {
			return nil, fmt.Errorf("%w: unterminated variable", ErrEnv)
		}
		k, v, ok := strings.Cut(string(data[:end]), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: entry %q has no name=value", ErrEnv, data[:end])
		}
		e[k] = v
		data = data[end+1:]
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: no end marker", ErrEnv)
	}
	return e, nil
}
