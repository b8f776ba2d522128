package board

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// The TOML parser reports line numbers for syntax errors only: MetaData
// keeps key positions unexported. So that every semantic error can name
// file:line too, locate runs a small second pass over a document the parser
// has already accepted and records the line of every key, table header and
// array element, by path. Indices of arrays (of tables, or inline) are path
// components, so "port.2.vlans.1" is the second VLAN id of the third [[port]].
//
// The pass trusts the parser for validity: on input it does not understand it
// still makes progress and never panics, it merely records fewer positions,
// and a lookup then falls back to the nearest enclosing key that it found.

// positions maps a key path (components joined by pathSep) to a 1-based line.
type positions map[string]int

const pathSep = "\x00"

func pathKey(path []string) string { return strings.Join(path, pathSep) }

// line returns the line of path, or of its nearest recorded ancestor, or 1.
func (ps positions) line(path ...string) int {
	for n := len(path); n > 0; n-- {
		if l, ok := ps[pathKey(path[:n])]; ok {
			return l
		}
	}
	return 1
}

type locator struct {
	s      string
	i      int
	line   int
	pos    positions
	arrays map[string]int // array-of-tables path -> number of elements so far
}

func locate(doc string) positions {
	l := &locator{s: doc, line: 1, pos: positions{}, arrays: map[string]int{}}
	var table []string
	for !l.eof() {
		l.skipSpaceComments(true)
		if l.eof() {
			break
		}
		start := l.i
		switch c := l.s[l.i]; {
		case c == '[':
			table = l.header()
		case isBareKeyChar(c) || c == '"' || c == '\'':
			l.keyval(table)
		}
		if l.i == start {
			l.advance() // not understood: move on regardless
		}
	}
	return l.pos
}

func (l *locator) eof() bool { return l.i >= len(l.s) }

func (l *locator) peek(off int) byte {
	if l.i+off < len(l.s) {
		return l.s[l.i+off]
	}
	return 0
}

func (l *locator) advance() {
	if l.eof() {
		return
	}
	if l.s[l.i] == '\n' {
		l.line++
	}
	l.i++
}

func (l *locator) record(path []string, line int) {
	k := pathKey(path)
	if _, ok := l.pos[k]; !ok {
		l.pos[k] = line
	}
}

// skipSpaceComments skips blanks and comments, and newlines if nl is set.
func (l *locator) skipSpaceComments(nl bool) {
	for !l.eof() {
		switch l.s[l.i] {
		case ' ', '\t', '\r':
			l.i++
		case '\n':
			if !nl {
				return
			}
			l.advance()
		case '#':
			for !l.eof() && l.s[l.i] != '\n' {
				l.i++
			}
		default:
			return
		}
	}
}

// header reads "[a.b]" or "[[a.b]]" and returns the table's full path.
func (l *locator) header() []string {
	line := l.line
	l.i++ // '['
	array := l.peek(0) == '['
	if array {
		l.i++
	}
	l.skipSpaceComments(false)
	parts := l.key()
	var resolved []string
	for n, part := range parts {
		resolved = append(resolved, part)
		k := pathKey(resolved)
		if array && n == len(parts)-1 {
			idx := l.arrays[k]
			l.arrays[k] = idx + 1
			l.record(resolved, line) // the array itself: its first header
			resolved = append(resolved, strconv.Itoa(idx))
		} else if idx, ok := l.arrays[k]; ok {
			resolved = append(resolved, strconv.Itoa(idx-1))
		}
		l.record(resolved, line)
	}
	// The rest of the line is "]" or "]]" and maybe a comment.
	for !l.eof() && l.s[l.i] != '\n' && l.s[l.i] != '#' {
		l.i++
	}
	return resolved
}

// keyval reads "a.b = value" inside table prefix.
func (l *locator) keyval(prefix []string) {
	line := l.line
	parts := l.key()
	if len(parts) == 0 {
		return
	}
	path := append([]string(nil), prefix...)
	for _, p := range parts {
		path = append(path, p)
		l.record(path, line)
	}
	l.skipSpaceComments(false)
	if l.peek(0) != '=' {
		return
	}
	l.i++
	l.skipSpaceComments(false)
	l.value(path)
}

// key reads a possibly dotted key of bare and quoted parts.
func (l *locator) key() []string {
	var parts []string
	for {
		l.skipSpaceComments(false)
		if l.eof() {
			return parts
		}
		switch c := l.s[l.i]; {
		case c == '"':
			parts = append(parts, l.basicString())
		case c == '\'':
			parts = append(parts, l.literalString())
		case isBareKeyChar(c):
			start := l.i
			for !l.eof() && isBareKeyChar(l.s[l.i]) {
				l.i++
			}
			parts = append(parts, l.s[start:l.i])
		default:
			return parts
		}
		l.skipSpaceComments(false)
		if l.peek(0) != '.' {
			return parts
		}
		l.i++
	}
}

// value skips one value, recording the positions of the keys and elements
// inside inline tables and arrays.
func (l *locator) value(path []string) {
	if l.eof() {
		return
	}
	switch l.s[l.i] {
	case '"':
		if strings.HasPrefix(l.s[l.i:], `"""`) {
			l.multiline(`"""`, true)
		} else {
			l.basicString()
		}
	case '\'':
		if strings.HasPrefix(l.s[l.i:], `'''`) {
			l.multiline(`'''`, false)
		} else {
			l.literalString()
		}
	case '[':
		l.i++
		for idx := 0; ; idx++ {
			l.skipSpaceComments(true)
			if l.eof() {
				return
			}
			if l.s[l.i] == ']' {
				l.i++
				return
			}
			start := l.i
			elem := append(append([]string(nil), path...), strconv.Itoa(idx))
			l.record(elem, l.line)
			l.value(elem)
			l.skipSpaceComments(true)
			if l.peek(0) == ',' {
				l.i++
			} else if l.i == start {
				l.advance()
			}
		}
	case '{':
		l.i++
		for {
			l.skipSpaceComments(true)
			if l.eof() {
				return
			}
			if l.s[l.i] == '}' {
				l.i++
				return
			}
			start := l.i
			l.keyval(path)
			l.skipSpaceComments(true)
			if l.peek(0) == ',' {
				l.i++
			} else if l.i == start {
				l.advance()
			}
		}
	default: // number, boolean, date-time: up to a delimiter
		for !l.eof() && !strings.ContainsRune(",]}\n#", rune(l.s[l.i])) {
			l.i++
		}
	}
}

// basicString reads a "..." string and returns its value.
func (l *locator) basicString() string {
	l.i++ // opening quote
	var b strings.Builder
	for !l.eof() {
		c := l.s[l.i]
		switch {
		case c == '"':
			l.i++
			return b.String()
		case c == '\n':
			return b.String() // not valid TOML; stop at the line end
		case c == '\\' && l.i+1 < len(l.s):
			l.i++
			l.escape(&b)
		default:
			b.WriteByte(c)
			l.i++
		}
	}
	return b.String()
}

// escape decodes the escape sequence after a backslash.
func (l *locator) escape(b *strings.Builder) {
	c := l.s[l.i]
	l.i++
	hex := 0
	switch c {
	case 'b':
		b.WriteByte('\b')
	case 't':
		b.WriteByte('\t')
	case 'n':
		b.WriteByte('\n')
	case 'f':
		b.WriteByte('\f')
	case 'r':
		b.WriteByte('\r')
	case 'e':
		b.WriteByte(0x1b)
	case 'x':
		hex = 2
	case 'u':
		hex = 4
	case 'U':
		hex = 8
	default: // '"', '\\' and anything the parser let through
		b.WriteByte(c)
	}
	if hex == 0 {
		return
	}
	if l.i+hex > len(l.s) {
		l.i = len(l.s)
		return
	}
	r, err := strconv.ParseUint(l.s[l.i:l.i+hex], 16, 32)
	l.i += hex
	if err == nil && r <= utf8.MaxRune {
		b.WriteRune(rune(r))
	}
}

// literalString reads a '...' string and returns its value.
func (l *locator) literalString() string {
	l.i++
	start := l.i
	for !l.eof() && l.s[l.i] != '\'' && l.s[l.i] != '\n' {
		l.i++
	}
	v := l.s[start:l.i]
	if l.peek(0) == '\'' {
		l.i++
	}
	return v
}

// multiline skips a multi-line string, basic or literal by delim, counting
// its lines.
func (l *locator) multiline(delim string, escapes bool) {
	l.i += len(delim)
	for !l.eof() {
		if escapes && l.s[l.i] == '\\' {
			l.i++
			l.advance() // may be a line-ending backslash
			continue
		}
		if strings.HasPrefix(l.s[l.i:], delim) {
			l.i += len(delim)
			// Up to two more quotes belong to the content: """a""""" is `a""`.
			for n := 0; n < 2 && l.peek(0) == delim[0]; n++ {
				l.i++
			}
			return
		}
		l.advance()
	}
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}
