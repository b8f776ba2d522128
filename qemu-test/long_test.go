package qemutest

import "flag"

// longRun is -long (go test ./qemu-test/ -run TestNOR -long): the long
// modes of the crash tests, many more rounds than CI runs
// (qemu-test/README.md).
var longRun = flag.Bool("long", false, "run the crash tests' long modes (many power-cut rounds)")
