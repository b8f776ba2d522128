// Command ifctl asks ifmgrd to create, destroy and list interfaces.
package main

import (
	"os"

	"github.com/uroute/uroute/firmware/ctl"
)

func main() { os.Exit(ctl.Main(os.Args[1:], os.Stdout, os.Stderr)) }
