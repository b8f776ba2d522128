package persist

import (
	"fmt"
	"strings"
)

// Identity is what a unit allocation serves. Exactly the fields that make up
// the identity are set; the same identity after a restart maps back to the same
// unit. ifctl sets Name; the board profile's allocations set Rule, plus the
// port's identity for per-port bridges and VLANs (PermMAC; or, for a port
// without a permanent MAC, BusPath and Link), plus VID for VLANs. Link
// appeared after schema 1's fixture; records without it read as before. (Schema 1 also had a "parent" field that nothing ever set;
// old JSON that has one still decodes, the field is ignored.)
type Identity struct {
	Name    string `json:"name,omitempty"` // explicit interface name asked for through ifctl
	Rule    string `json:"rule,omitempty"` // board-profile rule that derived the interface
	PermMAC string `json:"mac,omitempty"`  // permanent MAC of the hardware it follows
	BusPath string `json:"bus,omitempty"`  // bus path of the hardware it follows (or its BusDigest)
	Link    string `json:"link,omitempty"` // kernel name of a port without a permanent MAC
	VID     uint16 `json:"vid,omitempty"`  // 802.1Q VLAN id on the port
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
	add("link", id.Link)
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
	ParentName string `json:"parent_dev,omitempty"` // name of a VLAN's parent link when it was made
	VID        uint16 `json:"vid,omitempty"`
	// LastSeen is a logical clock value (never wall time: routers boot
	// without an RTC) of when a profile-derived identity was last present.
	// ifmgr advances the clock only in transactions that allocate anyway
	// (converge.go stampAndRetire), and retires the absent reservations with
	// the oldest stamps beyond a bound; ifctl records leave it 0.
	LastSeen uint64 `json:"seen,omitempty"`
}

// RecordKey addresses one record: a unit of a cloner.
type RecordKey struct {
	Cloner string
	Unit   uint32
}

// Key returns the record's address.
func (r Record) Key() RecordKey { return RecordKey{r.Cloner, r.Unit} }
