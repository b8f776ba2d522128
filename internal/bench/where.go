package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/uroute/uroute/internal/benchkit"
)

// WhereRow is one figure of where ifmgrd's time goes.
type WhereRow struct {
	Work    string  `json:"work"`
	N       int     `json:"n"`
	Metric  string  `json:"metric"`
	Value   float64 `json:"value"`
	PerLink float64 `json:"per_link"`
}

// where runs the bring-up and the socket creates once more, instrumented:
// a CPU profile of the daemon (ifmgrd-debug), and, in a separate run under
// strace -c, its netlink requests (sendmsg/sendto), replies read (recvmsg),
// and fsync/fdatasync calls. strace slows the daemon, so no time is taken
// from those runs.
func (b *bench) where() error {
	n := b.c.Ns[0]
	for _, x := range b.c.Ns {
		if x <= 1000 {
			n = max(n, x)
		}
	}
	var top strings.Builder
	for _, work := range []string{"bringup", "create"} {
		prof := b.c.path("cpu-" + work + ".pprof")
		if _, _, err := b.instrumented(work, n, []string{"-cpuprofile", prof, "--"}, nil); err != nil {
			return fmt.Errorf("profile %s: %w", work, err)
		}
		out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=30", filepath.Join(b.c.Bin, "ifmgrd-debug"), prof).CombinedOutput()
		if err != nil {
			return fmt.Errorf("pprof: %v: %s", err, out)
		}
		fmt.Fprintf(&top, "### %s, N=%d\n%s\n", work, n, out)

		counts := b.c.path("strace-" + work + ".txt")
		strace := []string{"-f", "-c", "-o", counts, "-e", "trace=fsync,fdatasync,sendmsg,sendto,recvmsg,recvfrom,write,pwrite64"}
		commits, _, err := b.instrumented(work, n, nil, strace)
		if err != nil {
			return fmt.Errorf("strace %s: %w", work, err)
		}
		calls, err := straceCounts(counts)
		if err != nil {
			return err
		}
		row := func(metric string, v float64) {
			b.rep.Where = append(b.rep.Where, WhereRow{Work: work, N: n, Metric: metric, Value: v, PerLink: v / float64(n)})
		}
		row("netlink datagrams sent (sendmsg+sendto; pipelined requests share one)", float64(calls["sendmsg"]+calls["sendto"]))
		row("netlink reads (recvmsg+recvfrom)", float64(calls["recvmsg"]+calls["recvfrom"]))
		row("fsync+fdatasync", float64(calls["fsync"]+calls["fdatasync"]))
		row("DB commits (ifctl status)", float64(commits))
	}
	b.rep.Profile = top.String()
	return nil
}

// instrumented runs one bring-up (or one create of n bridges) with
// ifmgrd-debug (debugArgs) or ifmgrd under strace, and returns the daemon's
// commit count.
func (b *bench) instrumented(work string, n int, debugArgs, strace []string) (uint64, time.Duration, error) {
	b.seq++
	ns, err := benchkit.NewNS(runNS)
	if err != nil {
		return 0, 0, err
	}
	r := &runCtx{n: n, ns: ns, sock: b.c.path(fmt.Sprintf("ifmgr-%d.sock", b.seq)), db: b.c.path(fmt.Sprintf("ifmgr-%d.db", b.seq))}
	defer os.Remove(r.db)
	commits, d, err := b.instrumentedIn(r, work, debugArgs, strace)
	if r.daemon != nil {
		// Under strace the process is strace: signal ifmgrd itself, so
		// strace sees it exit and writes its summary.
		if strace != nil {
			if kids, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", r.daemon.Process.Pid, r.daemon.Process.Pid)); len(kids) > 0 {
				if pid, err := strconv.Atoi(strings.Fields(string(kids))[0]); err == nil {
					syscall.Kill(pid, syscall.SIGTERM)
				}
			}
			r.daemon.Wait()
			r.daemon = nil
		}
		stopDaemon(r)
	}
	if r.w != nil {
		r.w.Close()
	}
	ns.Delete()
	if serr := b.settle(r.peers); err == nil {
		err = serr
	}
	return commits, d, err
}

func (b *bench) instrumentedIn(r *runCtx, work string, debugArgs, strace []string) (uint64, time.Duration, error) {
	var err error
	if r.w, err = benchkit.NewWatch(r.ns); err != nil {
		return 0, 0, err
	}
	bin := filepath.Join(b.c.Bin, "ifmgrd")
	var pre []string
	if debugArgs != nil {
		bin = filepath.Join(b.c.Bin, "ifmgrd-debug")
		pre = debugArgs
	}
	if strace != nil {
		pre = append(append(strace, bin), pre...)
		bin = "strace"
	}
	var d time.Duration
	switch work {
	case "bringup":
		if err := makePorts(r); err != nil {
			return 0, 0, err
		}
		prof, err := b.profilePath()
		if err != nil {
			return 0, 0, err
		}
		d, err = timed(r, benchkit.BridgedPorts("lan", r.n), func() error {
			return b.startDaemon(r, bin, pre, "--config", prof)
		})
		if err != nil {
			return 0, 0, err
		}
	case "create":
		if err := b.startDaemon(r, bin, pre); err != nil {
			return 0, 0, err
		}
		if err := waitSocket(r.sock, time.Minute); err != nil {
			return 0, 0, err
		}
		d, err = timed(r, benchkit.UpBridges("bridge", r.n), func() error { return createOverSocket(r.sock, r.n, 16) })
		if err != nil {
			return 0, 0, err
		}
	}
	if err := waitSocket(r.sock, time.Minute); err != nil {
		return 0, 0, err
	}
	fig, _ := daemonFigures(r).(map[string]any)
	commits, _ := fig["commits"].(uint64)
	return commits, d, nil
}

// straceCounts reads the calls column of an strace -c summary.
func straceCounts(path string) (map[string]int, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]int{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		// % time, seconds, usecs/call, calls, [errors,] syscall
		if len(fs) < 5 || strings.HasPrefix(fs[0], "-") || fs[0] == "%" {
			continue
		}
		name := fs[len(fs)-1]
		if name == "total" {
			continue
		}
		calls, err := strconv.Atoi(fs[3])
		if err != nil {
			continue
		}
		out[name] = calls
	}
	return out, sc.Err()
}
