package persist

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"

	"github.com/uroute/uroute/ifmgr/ifname"
)

// The ownership alias: ifmgr writes AliasPrefix + the identity's JSON into
// the IFLA_IFALIAS of every link it creates, so that a lost DB is rebuilt
// from the kernel (ifmgr's startup reads it back with IdentityFromAlias).
// The kernel refuses an alias longer than MaxAliasLen, and a link whose alias
// was refused is not recognised after a DB loss: ifmgr would make a second
// bridge for the same identity and move the ports to it. Every identity the
// planner derives therefore fits, by these rules:
//
//   - rule names (bridge and port rules of a profile) are at most
//     MaxRuleNameLen bytes, which board validation enforces;
//   - a permanent MAC is at most MaxAddrLen bytes (MAX_ADDR_LEN, which the
//     netlink decoder enforces), a port name at most ifname.MaxNameLen;
//   - a bus path, the one part with no natural bound (sysfs paths nest USB
//     hubs), is replaced by its digest (BusDigestPrefix + hex) in an
//     identity that would not fit otherwise (Identity.Fit).
//
// MaxRuleNameLen is computed from the encoding itself (worstCases), so a new
// field or a longer prefix moves the limit instead of breaking the promise.
const (
	AliasPrefix = "uroute:"
	// MaxAliasLen is IFALIASZ-1: the longest alias the kernel stores.
	MaxAliasLen = 255
	// MaxAddrLen is the kernel's MAX_ADDR_LEN: the longest link-layer
	// address, written as colon-separated hex.
	MaxAddrLen = 32
	// BusDigestPrefix starts a bus path that was too long to keep as is.
	BusDigestPrefix = "sha256:"
	// busDigestHex is how much of the digest is kept: 80 bits, against a
	// router's handful of bus paths.
	busDigestHex = 20
)

// The Rule prefixes of derived identities: what made the interface.
const (
	RuleBridge = "bridge/" // + bridge rule name: a bridge rule's bridge
	RulePort   = "port/"   // + port rule name: what a port rule makes on a port
)

// MaxRuleNameLen is the longest bridge or port rule name whose every derived
// identity fits MaxAliasLen.
var MaxRuleNameLen = maxRuleNameLen()

// Alias is the ownership alias text of the identity.
func (id Identity) Alias() string {
	b, _ := json.Marshal(id) // a struct of strings and ints cannot fail
	return AliasPrefix + string(b)
}

// IdentityFromAlias reads back what Alias wrote; ok is false for an alias
// that is not ifmgr's or is damaged.
func IdentityFromAlias(alias string) (id Identity, ok bool) {
	rest, ok := strings.CutPrefix(alias, AliasPrefix)
	if !ok || json.Unmarshal([]byte(rest), &id) != nil || id.Key() == "" {
		return Identity{}, false
	}
	return id, true
}

// Fit returns the identity with its bus path replaced by the path's digest
// if its alias would not fit otherwise. Identities that fit are unchanged,
// so the readable path stays wherever there is room for it.
func (id Identity) Fit() Identity {
	if id.BusPath != "" && len(id.Alias()) > MaxAliasLen {
		id.BusPath = BusDigest(id.BusPath)
	}
	return id
}

// BusDigest is the short stand-in for a bus path in an identity.
func BusDigest(bus string) string {
	sum := sha256.Sum256([]byte(bus))
	return BusDigestPrefix + hex.EncodeToString(sum[:])[:busDigestHex]
}

// worstCases are the longest identities of every shape the planner derives
// (see plan.PortBridgeIdentity, plan.VLANIdentity), with an empty rule
// name: a permanent MAC of MaxAddrLen bytes, or a bus path that does not
// fit (so a digest) and a port name of ifname.MaxNameLen bytes that JSON
// escapes six to one ("\u0001"), with and without the longest VLAN id. A
// shared bridge's identity (RuleBridge + name) is shorter than all of them.
func worstCases() []Identity {
	mac := strings.TrimSuffix(strings.Repeat("ff:", MaxAddrLen), ":")
	link := strings.Repeat("\x01", ifname.MaxNameLen)
	bus := BusDigest("")
	var out []Identity
	for _, hw := range []Identity{{PermMAC: mac}, {BusPath: bus, Link: link}} {
		bridge, vlan := hw, hw
		bridge.Rule = RuleBridge
		vlan.Rule, vlan.VID = RulePort, ifname.MaxVID
		out = append(out, bridge, vlan)
	}
	return out
}

func maxRuleNameLen() int {
	longest := 0
	for _, id := range worstCases() {
		longest = max(longest, len(id.Alias()))
	}
	return MaxAliasLen - longest
}
