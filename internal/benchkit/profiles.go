package benchkit

// The board profiles the benchmarks drive ifmgr with (the bench's bring-up
// and events sections, and the planner's own Go benchmarks): every veth
// port lan* in a bridge of its own, or all of them in one bridge.
const (
	PerPortProfile = `# benchkit.PerPortProfile: every veth port lan* gets a bridge of its own.
board = "bench"
[[port]]
name = "lan"
match.name = "lan*"
bridge = "lan"
[[bridge]]
name = "lan"
per_port = true
`
	SharedProfile = `# benchkit.SharedProfile: every veth port lan* in one bridge.
board = "bench"
[[port]]
name = "lan"
match.name = "lan*"
bridge = "lan"
[[bridge]]
name = "lan"
`
)
