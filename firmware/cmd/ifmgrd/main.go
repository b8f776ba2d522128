// Command ifmgrd is uroute's interface manager daemon.
package main

import (
	"os"

	"github.com/uroute/uroute/firmware/daemon"
)

func main() { os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr)) }
