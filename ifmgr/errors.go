package ifmgr

import (
	"errors"

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

	ErrNameTooLong  = errors.New("interface name longer than 15 bytes (IFNAMSIZ-1)")
	ErrBadName      = errors.New("not a valid interface name")
	ErrUnknownKind  = errors.New("unknown interface kind")
	ErrNotOwned     = errors.New("interface is not managed by ifmgr")
	ErrFromProfile  = errors.New("interface is derived from the board profile: change the profile instead")
	ErrBadProfile   = errors.New("board profile refused")
	ErrNoSuchLink   = errors.New("no such interface")
	ErrBadVID       = errors.New("VLAN id out of range 1-4094")
	ErrVLANExists   = errors.New("VLAN id already exists on that parent")
	ErrBadParent    = errors.New("parent cannot carry a VLAN")
	ErrPersist      = errors.New("cannot record the allocation")
	ErrKernel       = errors.New("kernel refused the change")
	ErrClosed       = errors.New("ifmgr is shutting down")
	ErrBadTemplate  = errors.New("bad cloner name template")
	ErrBadRequest   = errors.New("bad request")
	ErrQueueTimeout = errors.New("request not taken before its deadline")
)
