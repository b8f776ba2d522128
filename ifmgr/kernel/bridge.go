package kernel

import "errors"

// BridgeOptions are a bridge's VLAN-filtering settings, sent in the creating
// RTM_NEWLINK (IFLA_LINKINFO/IFLA_INFO_DATA: IFLA_BR_VLAN_FILTERING,
// IFLA_BR_VLAN_DEFAULT_PVID) and by SetBridgeOptions.
type BridgeOptions struct {
	VLANFiltering bool
	// DefaultPVID is IFLA_BR_VLAN_DEFAULT_PVID. 0 means "none": ifmgr sets
	// every port's membership itself, so a new port joins no VLAN until
	// ifmgr says which.
	DefaultPVID uint16
}

// BridgeVLAN is one VLAN a bridge port (or the bridge itself, "self") is a
// member of.
type BridgeVLAN struct {
	VID      uint16
	PVID     bool // BRIDGE_VLAN_INFO_PVID: untagged ingress is classified into VID
	Untagged bool // BRIDGE_VLAN_INFO_UNTAGGED: egress without a tag
}

var errNotYet = errors.New("not implemented yet")

// CreateBridgeWith creates a bridge like CreateBridge, with opt in the same
// RTM_NEWLINK.
func (c *Conn) CreateBridgeWith(name string, group uint32, opt BridgeOptions) (Link, error) {
	return Link{}, errNotYet
}

// SetBridgeOptions sets an existing bridge's VLAN-filtering settings.
func (c *Conn) SetBridgeOptions(index uint32, opt BridgeOptions) error { return errNotYet }

// BridgeVLANs dumps the VLAN membership of every bridge port and bridge,
// keyed by ifindex (a bridge's own ifindex: its self membership).
func (c *Conn) BridgeVLANs() (map[uint32][]BridgeVLAN, error) { return nil, errNotYet }

// AddBridgeVLAN adds (or updates the flags of) one VLAN of a port
// (self=false) or of a bridge's own side (self=true).
func (c *Conn) AddBridgeVLAN(index uint32, self bool, v BridgeVLAN) error { return errNotYet }

// DelBridgeVLAN removes one VLAN of a port or of a bridge's own side.
func (c *Conn) DelBridgeVLAN(index uint32, self bool, vid uint16) error { return errNotYet }
