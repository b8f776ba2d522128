package ifmgr

import (
	"testing"

	"github.com/uroute/uroute/ifmgr/kernel"
)

// Every test of the package compares each incremental plan with the full
// one (see checkPlans): the manager's tests drive the planner through
// events, applies, refusals and restarts that plan's own random test does
// not model.
func init() { checkPlans = true }

// TestLinkTableMarksChanges: every change of what the planner reads of a
// link marks its ifindex (linkTable.takeChanged), so that the planner is
// told of it; a membership dump marks only the links whose entries differ.
func TestLinkTableMarksChanges(t *testing.T) {
	lt := newLinkTable()
	lt.observe(kernel.Link{Index: 2, Name: "eth0"})
	lt.observe(kernel.Link{Index: 3, Name: "eth1"})
	lt.observe(kernel.Link{Index: 9, Name: "bridge0"})
	lt.setVLANs(map[uint32][]kernel.BridgeVLAN{2: {{VID: 1}}, 3: {{VID: 5}}})
	lt.takeChanged()
	for _, step := range []struct {
		name   string
		change func()
		want   uint32
	}{
		{"markUp", func() { lt.markUp(2) }, 2},
		{"setMaster", func() { lt.setMaster(3, 9) }, 3},
		{"markEnslaved", func() { lt.markEnslaved(2, 9) }, 2},
		{"setOptions", func() { lt.setOptions(9, kernel.BridgeOptions{VLANFiltering: true}) }, 9},
		{"addVLAN", func() { lt.addVLAN(2, kernel.BridgeVLAN{VID: 7}) }, 2},
		{"delVLAN", func() { lt.delVLAN(2, 7) }, 2},
		{"setVLANs", func() { lt.setVLANs(map[uint32][]kernel.BridgeVLAN{2: {{VID: 1}}, 9: {{VID: 1}}}) }, 9},
		{"observe", func() { lt.observe(kernel.Link{Index: 3, Name: "eth1", Flags: 1}) }, 3},
		{"gone", func() { lt.gone(2) }, 2},
	} {
		step.change()
		changed, all := lt.takeChanged()
		if all || !changed[step.want] || len(changed) != 1 {
			t.Errorf("%s: changed %v (all %v), want only ifindex %d", step.name, changed, all, step.want)
		}
	}
	lt.replace(nil)
	if _, all := lt.takeChanged(); !all {
		t.Error("replace: not every link marked")
	}
}
