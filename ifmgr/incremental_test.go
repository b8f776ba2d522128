package ifmgr

// Every test of the package compares each incremental plan with the full
// one (see checkPlans): the manager's tests drive the planner through
// events, applies, refusals and restarts that plan's own random test does
// not model.
func init() { checkPlans = true }
