//go:build integration

package web_test

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// TestStatsCharts: a pipeline's card draws each step's throughput,
// failures and latency over the last 15 minutes from the stats endpoint
// (issue 18), with a point per bucket that has data.
func TestStatsCharts(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [b]}\n  b: {handler: echo}\n")
	var run, wait dsat.LatencyHistogram
	for i := 1; i <= 100; i++ {
		run.Add(time.Duration(i) * time.Millisecond)
		wait.Add(time.Duration(i) * 100 * time.Microsecond)
	}
	now := time.Now()
	for _, at := range []time.Time{now.Add(-time.Minute), now.Add(-30 * time.Second), now} {
		s := []dsat.StepSample{{Pipeline: "demo", Step: "a", Ended: 50, Failed: 3, Dead: 1, Run: run, Wait: wait}}
		if err := e.c.RecordStats(e.ctx, at, s); err != nil {
			t.Fatal(err)
		}
	}
	bctx := e.browser(t)
	chart := func(kind string) string {
		return `section[data-pipeline="demo"] svg[data-chart="` + kind + `"][data-step="a"]`
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(e.srv.URL+"/#/"), chromedp.WaitVisible(chart("latency"))); err != nil {
		t.Fatalf("no chart: %v", err)
	}
	attr := func(sel, name string) int {
		t.Helper()
		v, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('`+sel+`').getAttribute('`+name+`')`))
		if err != nil {
			t.Fatalf("%s: %v", sel, err)
		}
		n, _ := strconv.Atoi(v)
		return n
	}
	// 90 buckets of 10 s; three of them hold step a's samples.
	if n, nz := attr(chart("throughput")+` path[data-series="done"]`, "data-points"), attr(chart("throughput")+` path[data-series="done"]`, "data-nonzero"); n != 90 || nz != 3 {
		t.Fatalf("throughput: %d points, %d non-zero; want 90 and 3", n, nz)
	}
	if nz := attr(chart("failures")+` path[data-series="failed attempts"]`, "data-nonzero"); nz != 3 {
		t.Fatalf("failures: %d non-zero points, want 3", nz)
	}
	if n := attr(chart("latency")+` path[data-series="p95"]`, "data-points"); n != 3 {
		t.Fatalf("latency p95: %d points, want 3 (a bucket without runs has none)", n)
	}
	if n := attr(`section[data-pipeline="demo"] svg[data-chart="latency"][data-step="b"] path[data-series="p50"]`, "data-points"); n != 0 {
		t.Fatalf("step b ran nothing, yet its latency has %d points", n)
	}
	text, err := chromedp.Run(bctx, chromedp.Text(`section[data-pipeline="demo"] table.charts tr[data-step="a"]`))
	if err != nil || !containsAll(text, "150 done", "9 failed attempts · 3 dead", "p50 ") {
		t.Fatalf("step a's totals: %q %v", text, err)
	}
}

func containsAll(s string, subs ...string) bool {
	for _, x := range subs {
		if !strings.Contains(s, x) {
			return false
		}
	}
	return true
}
