package board

import (
	"github.com/uroute/uroute/ifmgr/ifname"
	"github.com/uroute/uroute/persist"
)

// templatesApart refuses cloner templates whose names can collide over the
// units they allow: with bridge "br%d" and VLAN "br1%d", "br10" would be
// bridge 10 and VLAN 0, and each cloner would take it for its own. The
// error is at the VLAN template (or at the bridge's, if the VLAN cloner is
// not written out), since either may be the one to change.
func (v *validator) templatesApart(p *Profile) {
	b, vl := p.Cloners[ClonerBridge], p.Cloners[ClonerVLAN]
	bt, errB := ifname.ParseTemplate(b.Template)
	vt, errV := ifname.ParseTemplate(vl.Template)
	if errB != nil || errV != nil {
		return // reported where the template is read
	}
	name, vu, bu, ok := ifname.Overlap(vt, vl.Max, bt, b.Max)
	if !ok {
		return
	}
	at, rule := []string{"cloners", ClonerVLAN, "template"}, "cloners."+ClonerVLAN
	if _, written := v.pos[pathKey(at[:2])]; !written {
		at, rule = []string{"cloners", ClonerBridge, "template"}, "cloners."+ClonerBridge
	}
	v.errorf(at, rule, "template", "%q renders %q (unit %d), which %q renders too (unit %d): their names would collide", vl.Template, name, vu, b.Template, bu)
}

// ruleNameFits refuses a bridge or port rule name longer than
// persist.MaxRuleNameLen: the name goes into the identities of what the rule
// derives, and an identity longer than the kernel's alias could not be read
// back after a DB loss (a second bridge would be made, and the ports moved
// to it). The limit is computed from the identity encoding, in persist.
func (v *validator) ruleNameFits(name string, path []string, rule string) bool {
	if len(name) <= persist.MaxRuleNameLen {
		return true
	}
	v.errorf(sub(path, "name"), rule, "name", "%q is %d bytes, longer than %d: rule names go into the identities ifmgr writes in the kernel's %d-byte interface alias",
		name, len(name), persist.MaxRuleNameLen, persist.MaxAliasLen)
	return false
}
