package fwimage

import (
	"encoding/binary"
	"fmt"
)

// A FIT image is a flattened device tree (FDT, "DTB"): a header, a block
// of tokens describing nodes and properties, and a block of property
// names. node is one parsed node; parseFDT checks every offset and length
// against the blob, because the blob comes from an upgrade file that may
// be anything.
type node struct {
	Name     string
	Props    map[string][]byte
	Children []*node
}

// child is the child named name, or nil.
func (n *node) child(name string) *node {
	for _, c := range n.Children {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// str is property name as a NUL-terminated string ("" if absent or not one).
func (n *node) str(name string) string {
	v, ok := n.Props[name]
	if !ok || len(v) == 0 || v[len(v)-1] != 0 {
		return ""
	}
	return string(v[:len(v)-1])
}

const (
	fdtMagic     = 0xd00dfeed
	fdtBeginNode = 1
	fdtEndNode   = 2
	fdtProp      = 3
	fdtNop       = 4
	fdtEnd       = 9
	fdtHeaderLen = 40
	fdtMaxDepth  = 16
)

// fdtTotalSize reads the size the FDT header claims, for callers that must
// know where the blob ends (the signature trailer follows it).
func fdtTotalSize(b []byte) (uint32, error) {
	if len(b) < fdtHeaderLen {
		return 0, fmt.Errorf("%w: %d bytes, shorter than an FDT header", ErrFIT, len(b))
	}
	if m := binary.BigEndian.Uint32(b); m != fdtMagic {
		return 0, fmt.Errorf("%w: magic %#x, want %#x (not a FIT image)", ErrFIT, m, uint32(fdtMagic))
	}
	return binary.BigEndian.Uint32(b[4:]), nil
}

// parseFDT parses a whole FDT blob.
func parseFDT(b []byte) (*node, error) {
	total, err := fdtTotalSize(b)
	if err != nil {
		return nil, err
	}
	if uint64(total) != uint64(len(b)) {
		return nil, fmt.Errorf("%w: header says %d bytes, have %d", ErrFIT, total, len(b))
	}
	be := binary.BigEndian
	offStruct, offStrings := be.Uint32(b[8:]), be.Uint32(b[12:])
	version := be.Uint32(b[20:])
	sizeStrings, sizeStruct := be.Uint32(b[32:]), be.Uint32(b[36:])
	if version < 17 {
		return nil, fmt.Errorf("%w: FDT version %d, want 17", ErrFIT, version)
	}
	if uint64(offStruct)+uint64(sizeStruct) > uint64(total) || uint64(offStrings)+uint64(sizeStrings) > uint64(total) {
		return nil, fmt.Errorf("%w: FDT blocks outside the blob", ErrFIT)
	}
	p := &fdtParser{s: b[offStruct : offStruct+sizeStruct], strs: b[offStrings : offStrings+sizeStrings]}
	tok, err := p.token()
	for err == nil && tok == fdtNop {
		tok, err = p.token()
	}
	if err != nil {
		return nil, err
	}
	if tok != fdtBeginNode {
		return nil, fmt.Errorf("%w: FDT does not start with a node", ErrFIT)
	}
	root, err := p.node(0)
	if err != nil {
		return nil, err
	}
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case fdtNop:
			continue
		case fdtEnd:
			return root, nil
		default:
			return nil, fmt.Errorf("%w: token %d after the root node", ErrFIT, tok)
		}
	}
}

type fdtParser struct {
	s, strs []byte
	pos     int
}

func (p *fdtParser) u32() (uint32, error) {
	if p.pos+4 > len(p.s) {
		return 0, fmt.Errorf("%w: FDT structure block truncated", ErrFIT)
	}
	v := binary.BigEndian.Uint32(p.s[p.pos:])
	p.pos += 4
	return v, nil
}

func (p *fdtParser) token() (uint32, error) { return p.u32() }

// align moves to the next 4-byte boundary.
func (p *fdtParser) align() { p.pos = (p.pos + 3) &^ 3 }

// cstring reads a NUL-terminated string from b at off.
func cstring(b []byte, off int) (string, int, error) {
	for i := off; i < len(b); i++ {
		if b[i] == 0 {
			return string(b[off:i]), i + 1, nil
		}
	}
	return "", 0, fmt.Errorf("%w: unterminated FDT string", ErrFIT)
}

// node parses a node whose FDT_BEGIN_NODE token was just read.
func (p *fdtParser) node(depth int) (*node, error) {
	if depth > fdtMaxDepth {
		return nil, fmt.Errorf("%w: FDT nested deeper than %d", ErrFIT, fdtMaxDepth)
	}
	name, next, err := cstring(p.s, p.pos)
	if err != nil {
		return nil, err
	}
	p.pos = next
	p.align()
	n := &node{Name: name, Props: map[string][]byte{}}
	for {
		tok, err := p.token()
		if err != nil {
			return nil, err
		}
		switch tok {
		case fdtNop:
		case fdtProp:
			size, err := p.u32()
			if err != nil {
				return nil, err
			}
			nameOff, err := p.u32()
			if err != nil {
				return nil, err
			}
			if uint64(p.pos)+uint64(size) > uint64(len(p.s)) {
				return nil, fmt.Errorf("%w: property in node %q runs past the structure block", ErrFIT, name)
			}
			pname, _, err := cstring(p.strs, int(nameOff))
			if err != nil || int(nameOff) >= len(p.strs) {
				return nil, fmt.Errorf("%w: bad property name offset %d in node %q", ErrFIT, nameOff, name)
			}
			n.Props[pname] = p.s[p.pos : p.pos+int(size)]
			p.pos += int(size)
			p.align()
		case fdtBeginNode:
			c, err := p.node(depth + 1)
			if err != nil {
				return nil, err
			}
			n.Children = append(n.Children, c)
		case fdtEndNode:
			return n, nil
		default:
			return nil, fmt.Errorf("%w: unexpected FDT token %d in node %q", ErrFIT, tok, name)
		}
	}
}
