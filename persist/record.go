package persist

import (
	"fmt"
	"strings"
)

// Identity is what a unit allocation serves. Exactly the fields that make up
// the identity are set; the same identity after a restart maps back to the same
// unit. Today ifctl sets Name; hardware-derived allocations (hotplug) use
// Rule with PermMAC or BusPath, and VLANs add Parent and VID.
type Identity struct {
	Name    string `json:"name,omitempty"`   // explicit interface name asked for through ifctl
	Rule    string `json:"rule,omitempty"`   // board-profile rule that derived the interface
	PermMAC string `json:"mac,omitempty"`    // permanent MAC of the hardware it follows
	BusPath string `json:"bus,omitempty"`    // bus path of the hardware it follows
	Parent  string `json:"parent,omitempty"` // identity key (or name) of a VLAN's parent
	VID     uint16 `json:"vid,omitempty"`    // 802.1Q VLAN id on Parent
}

// Key is a canonical string form of the identity, used as an index key and in
// the IFLA_IFALIAS ownership text. Field order is fixed.
func (id Identity) Key() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	add("name", id.Name)
	add("rule", id.Rule)
	add("mac", id.PermMAC)
	add("bus", id.BusPath)
	add("parent", id.Parent)
	if id.VID != 0 {
		add("vid", fmt.Sprint(id.VID))
	}
	return strings.Join(parts, ",")
}

// Record is one persisted unit allocation.
type Record struct {
	Cloner   string   `json:"cloner"` // cloner name, e.g. "bridge" or "vlan"
	Unit     uint32   `json:"unit"`
	Identity Identity `json:"id"`
	// Kind-specific creation parameters, so startup can re-create or verify.
	Parent string `json:"parent_dev,omitempty"` // parent link name of a VLAN
	VID    uint16 `json:"vid,omitempty"`
	// LastSeen is a logical clock value (boot counter / event counter, never
	// wall time: routers boot without an RTC) of when the identity was last
	// present. Reserved for the hotplug issue's retirement of stale entries.
	LastSeen uint64 `json:"seen,omitempty"`
}

// RecordKey addresses one record: a unit of a cloner.
type RecordKey struct {
	Cloner string
	Unit   uint32
}

// Key returns the record's address.
func (r Record) Key() RecordKey { return RecordKey{r.Cloner, r.Unit} }
