// Package kernel is ifmgr's only door to the Linux kernel: typed link dumps,
// link creation and deletion over rtnetlink, and a watcher of RTNLGRP_LINK.
package kernel

import (
	"bytes"
	"net"
)

// Link is what ifmgr needs to know of one kernel interface, decoded from an
// RTM_NEWLINK message.
//
// Its fields are ordered by size, so that it has no padding (128 bytes, not
// 136): ifmgr's link table holds one per interface, by the thousand.
type Link struct {
	Name    string
	Kind    Kind   // IFLA_INFO_KIND: "bridge", "vlan", "veth", "" for plain hardware
	Alias   string // IFLA_IFALIAS: ifmgr writes the identity an interface serves here
	MAC     net.HardwareAddr
	PermMAC net.HardwareAddr // IFLA_PERM_ADDRESS, when the driver reports one
	Index   uint32
	Group   uint32 // IFLA_GROUP: ifmgr's ownership marker, set atomically at creation
	IfLink  uint32 // IFLA_LINK (sysfs iflink): lower device of a VLAN, peer of a veth (0 if none)
	Master  uint32 // IFLA_MASTER: bridge this link is a port of (0 if none)
	Flags   uint32 // ifi_flags (IFF_UP, IFF_RUNNING, ...)
	VLANID  uint16 // IFLA_VLAN_ID for kind "vlan"
	Oper    uint8  // IFLA_OPERSTATE

	// For kind "bridge", from its IFLA_INFO_DATA: IFLA_BR_VLAN_FILTERING
	// and IFLA_BR_VLAN_DEFAULT_PVID (0: none).
	VLANFiltering bool
	DefaultPVID   uint16

	// IfLinkOtherNS is set when the kernel also reports IFLA_LINK_NETNSID:
	// IfLink is then an ifindex in another network namespace (a veth whose
	// peer lives elsewhere, a VLAN moved away from its lower device) and must
	// not be looked up here.
	IfLinkOtherNS bool
}

// Kind is a link's IFLA_INFO_KIND, the name of the kernel driver that made
// it (rtnetlink's LinkDriver.Kind). ifmgr creates two; it observes any.
type Kind string

// The kinds ifmgr creates.
const (
	KindBridge Kind = "bridge"
	KindVLAN   Kind = "vlan"
)

// Equal reports whether l and o say the same of a link, field by field.
func (l Link) Equal(o Link) bool {
	return l.Index == o.Index && l.Name == o.Name && l.Kind == o.Kind && l.Group == o.Group && l.Alias == o.Alias &&
		bytes.Equal(l.MAC, o.MAC) && bytes.Equal(l.PermMAC, o.PermMAC) && l.IfLink == o.IfLink && l.VLANID == o.VLANID &&
		l.Master == o.Master && l.Flags == o.Flags && l.Oper == o.Oper && l.VLANFiltering == o.VLANFiltering &&
		l.DefaultPVID == o.DefaultPVID && l.IfLinkOtherNS == o.IfLinkOtherNS
}
