package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/term"

	"github.com/dsat-dev/dsat/dsat"
)

func init() {
	register(&command{name: "top", summary: "a live view of the pipelines: backlog, rate, failures, latency", usage: "[--pipeline P] [--interval D] [--window D] [--once]",
		help: `Shows one line per step of every loaded pipeline (or of --pipeline P):
its backlog (tokens waiting), running handlers over their concurrency,
the rate of tokens done per second, failed attempts and dead tokens, and
the handler run time's p50 and p95 — these four over --window (from
GET /v1/pipelines/{name}/stats; the server rounds it up to whole 10 s
buckets, and the header shows the window it used), the others as of
now — and its state
(paused, circuit breaker open or half open). On a terminal it redraws in
place every --interval until interrupted; when stdout is not a terminal
(or with --once) it prints one snapshot and exits.

Examples:
  dsat top
  dsat top --pipeline textstats --window 5m
  dsat top --once > snapshot.txt`,
		run: runTop})
}

// topFlags adds top's own flags.
func topFlags(fs *flag.FlagSet) (pipeline *string, interval *time.Duration, window *string, once *bool) {
	return fs.String("pipeline", "", "only this pipeline (default: every loaded pipeline)"),
		fs.Duration("interval", 2*time.Second, "how often to redraw on a terminal"),
		fs.String("window", "1m", "the window of the rate, failed, dead and latencies (10s to 15m, rounded up to whole 10 s buckets)"),
		fs.Bool("once", false, "print one snapshot and exit, also on a terminal")
}

func runTop(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("top", env)
	o := addAPIFlags(fs, env)
	pipeline, interval, window, once := topFlags(fs)
	if err := parse(fs, env, "top", args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("takes no arguments; name a pipeline with --pipeline")
	}
	if *interval < 100*time.Millisecond {
		return usagef("--interval must be at least 100ms")
	}
	if _, err := dsat.ParseStatsWindow(*window); err != nil {
		return usagef("--window %q: a Go duration from 10s to 15m, such as 1m", *window)
	}
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	live := !*once && isTerminal(env.stdout)
	for {
		var frame bytes.Buffer
		if err := topFrame(ctx, c, *pipeline, *window, *interval, live, &frame); err != nil {
			if !live || ctx.Err() != nil {
				return err
			}
			frame.Reset()
			fmt.Fprintf(&frame, "dsat top — %s — %s\n\n%v\n", c.base, time.Now().Format("15:04:05"), err)
		}
		if live {
			// Home, the frame, then clear what an earlier, longer frame left.
			fmt.Fprint(env.stdout, "\x1b[H"+strings.ReplaceAll(frame.String(), "\n", "\x1b[K\n")+"\x1b[J")
		} else {
			_, err := env.stdout.Write(frame.Bytes())
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(*interval):
		}
	}
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// topPipeline is what top reads of GET /v1/pipelines/{name}.
type topPipeline struct {
	Pipeline struct {
		Name   string `json:"name"`
		Paused bool   `json:"paused"`
		Steps  []struct {
			Name   string `json:"name"`
			Paused bool   `json:"paused"`
			Load   *struct {
				Backlog     int64 `json:"backlog"`
				Busy        int   `json:"busy"`
				Concurrency int   `json:"concurrency"`
			} `json:"load"`
			Breaker *topBreaker `json:"breaker"`
		} `json:"steps"`
	} `json:"pipeline"`
}

type topBreaker struct {
	State *dsat.BreakerState `json:"state"`
}

// topFrame writes one view of the pipelines: two API reads per pipeline,
// one more per older loaded version. Each loaded version's steps are shown
// once, labelled name@version when several are loaded; the figures over
// the window are per step name (Stats merges the versions).
func topFrame(ctx context.Context, c *apiClient, only, window string, interval time.Duration, live bool, w io.Writer) error {
	var loaded []struct{ Name, Version string }
	if _, err := c.do(ctx, "GET", "/v1/pipelines", nil, nil, &loaded); err != nil {
		return err
	}
	var names []string
	versions := map[string][]string{} // name -> loaded versions, oldest first
	for _, p := range loaded {
		if only != "" && p.Name != only {
			continue
		}
		if versions[p.Name] == nil {
			names = append(names, p.Name)
		}
		versions[p.Name] = append(versions[p.Name], p.Version)
	}
	if only != "" && len(names) == 0 {
		names = []string{only} // the API's 404 says it is not loaded
	}
	now := time.Now()
	used := window
	rows := [][]string{{"PIPELINE", "STEP", "BACKLOG", "RUNNING", "RATE/S", "FAILED", "DEAD", "P50", "P95", "STATE"}}
	for _, name := range names {
		var st dsat.PipelineStats
		if _, err := c.do(ctx, "GET", "/v1/pipelines/"+url.PathEscape(name)+"/stats?window="+url.QueryEscape(window), nil, nil, &st); err != nil {
			return err
		}
		if st.Window != "" {
			// The server's window: rounded up to whole buckets (1m0s is 1m).
			used = st.Window
			if strings.HasSuffix(used, "m0s") {
				used = strings.TrimSuffix(used, "0s")
			}
		}
		// The rate over the time the window's buckets cover: the last
		// bucket is still filling.
		covered := float64(len(st.Times) * st.BucketSeconds)
		if len(st.Times) > 0 {
			covered = max(1, now.Sub(st.Times[0].Time).Seconds())
		}
		vs := versions[name]
		if len(vs) == 0 {
			vs = []string{""} // --pipeline P not listed: the API says why
		}
		// The newest first (no version parameter), then the older ones.
		for i := len(vs) - 1; i >= 0; i-- {
			path, label := "/v1/pipelines/"+url.PathEscape(name), name
			if len(vs) > 1 {
				label = name + "@" + vs[i]
				if i < len(vs)-1 {
					path += "?version=" + url.QueryEscape(vs[i])
				}
			}
			var p topPipeline
			if _, err := c.do(ctx, "GET", path, nil, nil, &p); err != nil {
				return err
			}
			for _, s := range p.Pipeline.Steps {
				var backlog, running string
				if s.Load != nil {
					backlog, running = fmt.Sprint(s.Load.Backlog), fmt.Sprintf("%d/%d", s.Load.Busy, s.Load.Concurrency)
				}
				var t dsat.StepTotals
				if ss := st.Steps[s.Name]; ss != nil {
					t = ss.Totals
				}
				rows = append(rows, []string{label, s.Name, backlog, running, topRate(float64(t.Ended) / covered),
					fmt.Sprint(t.Failed), fmt.Sprint(t.Dead), topMS(t.RunP50MS), topMS(t.RunP95MS), topState(p.Pipeline.Paused || s.Paused, s.Breaker)})
			}
		}
	}
	head := fmt.Sprintf("dsat top — %s — %s", c.base, now.Format("15:04:05"))
	if live {
		head += fmt.Sprintf(" (every %s; Ctrl-C quits)", interval)
	}
	fmt.Fprintf(w, "%s\nrate, failed, dead and latencies over the last %s\n\n", head, used)
	writeColumns(w, rows, 2, 9) // names and state to the left, figures to the right
	return nil
}

// writeColumns writes rows as columns two spaces apart: columns before
// first and from last on aligned left, the others right.
func writeColumns(w io.Writer, rows [][]string, first, last int) {
	width := make([]int, len(rows[0]))
	for _, r := range rows {
		for i, v := range r {
			width[i] = max(width[i], utf8.RuneCountInString(v))
		}
	}
	for _, r := range rows {
		var b strings.Builder
		for i, v := range r {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(v))
			if i > 0 {
				b.WriteString("  ")
			}
			if i < first || i >= last {
				b.WriteString(v + pad)
			} else {
				b.WriteString(pad + v)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

// topRate shows a rate per second with two digits after the point below
// 10 (a token a minute is 0.02/s), one above.
func topRate(r float64) string {
	if r < 10 {
		return fmt.Sprintf("%.2f", r)
	}
	return fmt.Sprintf("%.1f", r)
}

// topMS shows a latency in milliseconds, "-" for none.
func topMS(v *float64) string {
	switch {
	case v == nil:
		return "-"
	case *v < 10:
		return fmt.Sprintf("%.2fms", *v)
	case *v < 10000:
		return fmt.Sprintf("%.0fms", *v)
	}
	return fmt.Sprintf("%.1fs", *v/1000)
}

// topState names what holds a step back: a pause, an open or half-open
// circuit breaker.
func topState(paused bool, b *topBreaker) string {
	var out []string
	if paused {
		out = append(out, "paused")
	}
	if b != nil && b.State != nil {
		out = append(out, map[string]string{dsat.BreakerOpen: "breaker open", dsat.BreakerHalfOpen: "breaker half open"}[b.State.State])
	}
	return strings.Join(out, ", ")
}
