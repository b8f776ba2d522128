package main

import (
	"errors"
	"fmt"
	"strings"
)

// parseCmdline splits a kernel command line into its parameters, as the
// kernel does: whitespace separates them, and double quotes group a value
// that holds spaces (param="a b"). The quotes are removed. A parameter
// without "=" maps to "". Later duplicates win.
func parseCmdline(s string) map[string]string {
	params := map[string]string{}
	var words []string
	var cur strings.Builder
	inQuote, inWord := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t' || r == '\n' || r == '\r'):
			if inWord {
				words = append(words, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inWord {
		words = append(words, cur.String())
	}
	for _, w := range words {
		k, v, _ := strings.Cut(w, "=")
		params[k] = v
	}
	return params
}

// dataConfig is where the data partition is and what it holds.
type dataConfig struct {
	Device string // uroute.data, default /dev/vda
	FSType string // uroute.datafs, default ext4
}

// cmdlineKeys are the uroute.* kernel arguments uinit reads, with the value
// an absent or empty one means. empty: the key may be given empty without
// a word (U-Boot's boot script writes uroute.skipped= when it passed over
// no slot).
var cmdlineKeys = []struct {
	key, def string
	empty    bool
}{
	{key: "uroute.data", def: "/dev/vda"},
	{key: "uroute.datafs", def: "ext4"},
	// The A/B boot (firmware/uboot/boot.cmd, bootenv.go): the slot U-Boot
	// booted and the slots it passed over.
	{key: "uroute.slot", def: "none (not an A/B boot)"},
	{key: "uroute.skipped", def: "none", empty: true},
	// The crash test's log-writes target over the data disk (datalog.go).
	{key: "uroute.datalog", def: "none"},
}

// cmdlineDefault is the value key takes when it is absent or empty.
func cmdlineDefault(key string) string {
	for _, k := range cmdlineKeys {
		if k.key == key {
			return k.def
		}
	}
	panic("uinit: no default for " + key)
}

func dataConfigFrom(cmdline string) dataConfig {
	p := parseCmdline(cmdline)
	c := dataConfig{Device: cmdlineDefault("uroute.data"), FSType: cmdlineDefault("uroute.datafs")}
	if v := p["uroute.data"]; v != "" {
		c.Device = v
	}
	if v := p["uroute.datafs"]; v != "" {
		c.FSType = v
	}
	return c
}

// cmdlineProblems returns one line for every uroute.* argument uinit does
// not know (naming the known key it is closest to, as a misspelling would
// otherwise leave its default in force without a word) and for every known
// one given empty. The kernel passes other arguments on to init unchecked,
// so only our own prefix is judged.
func cmdlineProblems(cmdline string) []string {
	p := parseCmdline(cmdline)
	var lines []string
	for _, w := range orderedKeys(cmdline) {
		v, ok := p[w]
		if !ok || !strings.HasPrefix(w, "uroute.") {
			continue
		}
		known := false
		for _, k := range cmdlineKeys {
			if k.key == w {
				known = true
				if v == "" && !k.empty {
					lines = append(lines, fmt.Sprintf("%s is empty: using the default %s", w, k.def))
				}
			}
		}
		if known {
			continue
		}
		arg := w
		if v != "" || strings.Contains(cmdline, w+"=") {
			arg = w + "=" + v
		}
		if near := nearestKey(w); near != "" {
			lines = append(lines, fmt.Sprintf("unknown kernel argument %s ignored (did you mean %s?)", arg, near))
		} else {
			names := make([]string, len(cmdlineKeys))
			for i, k := range cmdlineKeys {
				names[i] = k.key
			}
			lines = append(lines, fmt.Sprintf("unknown kernel argument %s ignored (known: %s)", arg, strings.Join(names, ", ")))
		}
	}
	return lines
}

// orderedKeys lists the parameter names of cmdline in order of first
// appearance, each once, so reports follow the command line.
func orderedKeys(cmdline string) []string {
	seen := map[string]bool{}
	var out []string
	for _, w := range strings.Fields(cmdline) {
		k, _, _ := strings.Cut(strings.ReplaceAll(w, `"`, ""), "=")
		if !seen[k] {
			seen[k] = true
			out = append(out, k)
		}
	}
	return out
}

// nearestKey returns the known key within edit distance 3 of key that is
// closest to it, or "" if none is that close.
func nearestKey(key string) string {
	best, bestD := "", 4
	for _, k := range cmdlineKeys {
		if d := editDistance(key, k.key); d < bestD {
			best, bestD = k.key, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b, in bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// checkCmdline is the cmdline step: its error holds one line per problem.
func (b *boot) checkCmdline() error {
	if lines := cmdlineProblems(b.Cmdline); len(lines) > 0 {
		return errors.New(strings.Join(lines, "\n"))
	}
	return nil
}
