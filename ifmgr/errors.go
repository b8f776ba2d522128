package ifmgr

import (
	"errors"

	"github.com/uroute/uroute/ifmgr/ifname"
	"github.com/uroute/uroute/ifmgr/units"
)

// The error values a caller can test with errors.Is. The three allocation
// failures of a specific unit are distinct values, checked in the order
// ErrUnitRange, ErrUnitExists, ErrNameTaken, so a unit past the maximum is
// never reported as "exists" (the if_clone EEXIST-for-ENOSPC bug).
var (
	ErrUnitRange    = units.ErrRange
	ErrUnitExists   = units.ErrExists
	ErrNameTaken    = units.ErrHeld
	ErrNotAllocated = units.ErrNotAllocated

	// The rules of names and VLAN ids live in ifname; these are the same
	// values, so errors.Is matches whichever layer refused.
	ErrNameTooLong = ifname.ErrNameTooLong // wraps ErrBadName
	ErrBadName     = ifname.ErrBadName
	ErrBadVID      = ifname.ErrBadVID
	ErrBadTemplate = ifname.ErrBadTemplate

	ErrUnknownKind  = errors.New("unknown interface kind")
	ErrNotOwned     = errors.New("interface is not managed by ifmgr")
	ErrFromProfile  = errors.New("interface is derived from the board profile: change the profile instead")
	ErrBadProfile   = errors.New("board profile refused")
	ErrNoSuchLink   = errors.New("no such interface")
	ErrVLANExists   = errors.New("VLAN id already exists on that parent")
	ErrBadParent    = errors.New("parent cannot carry a VLAN")
	ErrPersist      = errors.New("cannot record the allocation")
	ErrKernel       = errors.New("kernel refused the change")
	ErrClosed       = errors.New("ifmgr is shutting down")
	ErrBadRequest   = errors.New("bad request")
	ErrQueueTimeout = errors.New("request not taken before its deadline")
	// ErrSkipped answers a request of a Chain after one before it failed.
	ErrSkipped = errors.New("not done: an earlier command of the batch failed")
)
