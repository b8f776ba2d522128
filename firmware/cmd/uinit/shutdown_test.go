package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestSupervisorPIDs(t *testing.T) {
	proc := t.TempDir()
	write := func(pid, cmdline string) {
		if err := os.MkdirAll(filepath.Join(proc, pid), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(proc, pid, "cmdline"), []byte(cmdline), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("12", "/bin/uroute-uinit\x00supervise\x00--\x00/bin/ifmgrd\x00")
	write("13", "/bin/ifmgrd\x00--db\x00/data/uroute/ifmgr.db\x00")
	write("14", "gosh\x00")
	write("15", "") // a kernel thread
	write("self", "x\x00supervise\x00")
	if err := os.MkdirAll(filepath.Join(proc, "16"), 0o755); err != nil { // exited meanwhile: no cmdline
		t.Fatal(err)
	}
	got, err := supervisorPIDs(proc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != 12 {
		t.Fatalf("supervisorPIDs = %v, want [12]", got)
	}
}
