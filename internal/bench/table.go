package main

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"text/tabwriter"
)

var sectionTitle = map[string]string{
	"bringup":  "bring-up: one bridge per port, port enslaved, both up (ratio to ip -batch; target ifmgrd <= 1.0x)",
	"create":   "creates: N bridges created and up (ratio to ip -batch; target ifctl <= 1.2x)",
	"teardown": "teardown: N bridges removed (ratio to one ip link del per link; target >= 2x faster)",
}

func printTable(w io.Writer, rep *Report) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, sec := range []string{"bringup", "create", "teardown"} {
		var rs []Result
		for _, r := range rep.Results {
			if r.Section == sec {
				rs = append(rs, r)
			}
		}
		if len(rs) == 0 {
			continue
		}
		fmt.Fprintf(tw, "\n%s\n", sectionTitle[sec])
		fmt.Fprintf(tw, "N\tcontender\tmedian s\truns s\tratio\n")
		for _, r := range rs {
			fmt.Fprintf(tw, "%d\t%s\t%.3f\t%v\t%.2fx\n", r.N, r.Contender, r.Median, fmtRuns(r.Seconds), r.Ratio)
		}
	}
	if len(rep.Latency) > 0 {
		fmt.Fprintf(tw, "\nevent latency: link appears -> its bridge up with it (ms)\nwho\tevents\tp50\tp99\tmax\n")
		for _, l := range rep.Latency {
			fmt.Fprintf(tw, "%s\t%d\t%.2f\t%.2f\t%.2f\n", l.Who, l.Events, l.P50, l.P99, l.Max)
		}
	}
	if len(rep.Where) > 0 {
		fmt.Fprintf(tw, "\nwhere ifmgrd's time goes (strace -c)\nwork\tN\tmetric\ttotal\tper link\n")
		for _, x := range rep.Where {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%.0f\t%.2f\n", x.Work, x.N, x.Metric, x.Value, x.PerLink)
		}
	}
	if len(rep.Events) > 0 {
		fmt.Fprintf(tw, "\nevents: ifmgrd CPU per kernel operation until idle again\nprofile\tports\tcase\tops\tcpu s\tcpu ms/op\twall s\tops/s\tops/cpu-s\n")
		for _, e := range rep.Events {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%d\t%.3f\t%.2f\t%.2f\t%.0f\t%.0f\n", e.Profile, e.Ports, e.Case, e.Ops, e.CPUSeconds, e.CPUPerOpMs, e.WallSeconds, e.OpsPerSec, e.OpsPerCPUSec)
		}
	}
	if fp := rep.Footprint; fp != nil {
		fmt.Fprintf(tw, "\nfootprint\n")
		if fp.RSSIdle > 0 { // not measured with -no-socket-rss: no row rather than a 0.0 MB one
			fmt.Fprintf(tw, "RSS idle\t%.1f MB\nRSS with %d managed bridges\t%.1f MB\nDB empty / with %d\t%d / %d bytes (%.0f bytes per record)\n",
				mb(fp.RSSIdle), fp.Managed, mb(fp.RSSAt), fp.Managed, fp.DBEmpty, fp.DBAt, fp.DBPerRec)
		}
		for _, m := range fp.Profiles {
			fmt.Fprintf(tw, "RSS with the per-port profile, %d ports\t%.1f MB\n", m.Ports, mb(m.RSS.Total))
		}
		fmt.Fprintf(tw, "arch\tifmgrd\tifctl\tuinit\n")
		for _, a := range slices.Sorted(maps.Keys(fp.Binaries)) {
			s := fp.Binaries[a]
			fmt.Fprintf(tw, "%s\t%.2f MB\t%.2f MB\t%.2f MB\n", a, mb(s["ifmgrd"]), mb(s["ifctl"]), mb(s["uinit"]))
		}
	}
	tw.Flush()
	if rep.Profile != "" {
		fmt.Fprintf(w, "\nCPU profile of ifmgrd (top 30 by cumulative time)\n%s", rep.Profile)
	}
}

func mb(b int64) float64 { return float64(b) / 1e6 }

func fmtRuns(xs []float64) string {
	s := ""
	for i, x := range xs {
		if i > 0 {
			s += " "
		}
		s += fmt.Sprintf("%.3f", x)
	}
	return s
}
