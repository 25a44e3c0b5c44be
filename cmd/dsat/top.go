package main

import (
	"bytes"
	"context"
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
the handler run time's p50 and p95 — the last three over --window (from
GET /v1/pipelines/{name}/stats), the others as of now — and its state
(paused, circuit breaker open or half open). On a terminal it redraws in
place every --interval until interrupted; when stdout is not a terminal
(or with --once) it prints one snapshot and exits.

Examples:
  dsat top
  dsat top --pipeline textstats --window 5m
  dsat top --once > snapshot.txt`,
		run: runTop})
}

func runTop(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("top", env)
	o := addAPIFlags(fs, env)
	pipeline := fs.String("pipeline", "", "only this pipeline (default: every loaded pipeline)")
	interval := fs.Duration("interval", 2*time.Second, "how often to redraw on a terminal")
	window := fs.String("window", "1m", "the window of the rate, failures and latencies (10s to 15m)")
	once := fs.Bool("once", false, "print one snapshot and exit, also on a terminal")
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

// topFrame writes one view of the pipelines: two API reads per pipeline.
func topFrame(ctx context.Context, c *apiClient, only, window string, interval time.Duration, live bool, w io.Writer) error {
	names, err := pipelineNames(ctx, c, only)
	if err != nil {
		return err
	}
	now := time.Now()
	head := fmt.Sprintf("dsat top — %s — %s", c.base, now.Format("15:04:05"))
	if live {
		head += fmt.Sprintf(" (every %s; Ctrl-C quits)", interval)
	}
	fmt.Fprintf(w, "%s\nrate, failed, dead and latencies over the last %s\n\n", head, window)
	rows := [][]string{{"PIPELINE", "STEP", "BACKLOG", "RUNNING", "RATE/S", "FAILED", "DEAD", "P50", "P95", "STATE"}}
	for _, name := range names {
		var p topPipeline
		if _, err := c.do(ctx, "GET", "/v1/pipelines/"+url.PathEscape(name), nil, nil, &p); err != nil {
			return err
		}
		var st dsat.PipelineStats
		if _, err := c.do(ctx, "GET", "/v1/pipelines/"+url.PathEscape(name)+"/stats?window="+url.QueryEscape(window), nil, nil, &st); err != nil {
			return err
		}
		// The rate over the time the window's buckets cover: the last
		// bucket is still filling.
		covered := float64(len(st.Times) * st.BucketSeconds)
		if len(st.Times) > 0 {
			covered = max(1, now.Sub(st.Times[0].Time).Seconds())
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
			rows = append(rows, []string{p.Pipeline.Name, s.Name, backlog, running, topRate(float64(t.Ended) / covered),
				fmt.Sprint(t.Failed), fmt.Sprint(t.Dead), topMS(t.RunP50MS), topMS(t.RunP95MS), topState(p.Pipeline.Paused || s.Paused, s.Breaker)})
		}
	}
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
