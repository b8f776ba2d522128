package main

import (
	"fmt"

	"github.com/uroute/uroute/firmware/devmapper"
)

// DataLogName is the device-mapper name of the log-writes device that
// uroute.datalog= puts over the data disk; the crash test's workload
// (uroute-crashload) sends its marks to it.
const DataLogName = "datalog"

// dataLogFrom is uroute.datalog= of the kernel command line: the disk that
// logs the data disk's writes, or "" (every router).
func dataLogFrom(cmdline string) string { return parseCmdline(cmdline)["uroute.datalog"] }

// attachDataLog puts the data disk behind dm-log-writes, logging every
// write to the disk logDev (uroute.datalog=/dev/vdb), and returns the
// device to mount instead of device. It is for the crash test (issue
// 9), which replays the log on the host to see the disk at every instant
// the power could have gone; a router never sets it.
func (b *boot) attachDataLog(device, logDev string) (string, error) {
	dev, err := devmapper.CreateLogWrites(DataLogName, b.path(device), b.path(logDev))
	if err != nil {
		return "", fmt.Errorf("uroute.datalog=%s: %w", logDev, err)
	}
	return dev.Path, nil
}
