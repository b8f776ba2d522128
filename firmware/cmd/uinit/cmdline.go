package main

import "strings"

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

func dataConfigFrom(cmdline string) dataConfig {
	p := parseCmdline(cmdline)
	c := dataConfig{Device: "/dev/vda", FSType: "ext4"}
	if v := p["uroute.data"]; v != "" {
		c.Device = v
	}
	if v := p["uroute.datafs"]; v != "" {
		c.FSType = v
	}
	return c
}
