package benchkit

// SoakSummary is scripts/soak's soak.json: written by internal/soak, read
// by internal/results for docs/results.md.
type SoakSummary struct {
	Command        string   `json:"command"`
	Date           string   `json:"date"`
	Load           string   `json:"loadavg_at_start"`
	Duration       float64  `json:"duration_s"`
	Cycles         int      `json:"cycles"`
	CyclesPerSec   float64  `json:"cycles_per_s"`
	Ops            int      `json:"link_ops"`
	NewIdentities  int      `json:"new_identities"`
	KnownCommits   uint64   `json:"commits_for_known_identities"`
	WarmupEnd      float64  `json:"warmup_end_s"`
	RSSAfterWarmup int64    `json:"rss_after_warmup_bytes"`
	RSSEnd         int64    `json:"rss_end_bytes"`
	Goroutines     [2]int   `json:"goroutines_min_max_after_warmup"`
	FDs            [2]int   `json:"fds_min_max_after_warmup"`
	DBMaxBytes     int64    `json:"db_max_bytes"`
	DBEndBytes     int64    `json:"db_end_bytes"`
	UnitsStart     int      `json:"units_allocated_start"`
	UnitsEnd       int      `json:"units_allocated_end"`
	UnitsBound     int      `json:"units_bound"`
	Failures       []string `json:"failures"`
	CSV            string   `json:"csv"`
	PNG            string   `json:"png"`
}
