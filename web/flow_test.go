//go:build integration

package web_test

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// TestFlowTable: under a pipeline's graph, a table lists each step with
// limits or a breaker: its limits, their use now, its busiest fairness
// keys and its breaker's state, updating live; a step with neither is not
// listed (issue 16).
func TestFlowTable(t *testing.T) {
	e := newBrowserEnv(t, `name: demo
version: 1.0.0
steps:
  a: {handler: echo, next: [b], limits: {rate: 20/m, running: 5, key: customer, running_per_key: 2}, breaker: {failures: 1, within: 1m, open_for: 1m}}
  b: {handler: echo}
`)
	ctx, c, srv := e.ctx, e.c, e.srv
	p, err := c.Pipeline("demo")
	if err != nil {
		t.Fatal(err)
	}
	reqs := []dsat.LimitRequest{{ID: "1", Key: "zed"}, {ID: "2", Key: "acme"}, {ID: "3", Key: "acme"}}
	if _, err := c.AcquireLimits(ctx, p, "a", reqs, time.Minute); err != nil {
		t.Fatal(err)
	}
	bctx := e.browser(t)
	row := `section[data-pipeline="demo"] div[data-role="flow"] tr[data-step="a"]`
	cell := func(role string) string { return textOf(t, bctx, row+` td[data-role="`+role+`"]`) }
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/#/"), chromedp.WaitVisible(row+` td[data-state="closed"]`)); err != nil {
		t.Fatalf("flow table: %v", err)
	}
	for role, want := range map[string]string{
		"limits":        "rate 20/m · running 5 · per customer: running 2",
		"use":           "rate 3/20 in the last minute · running 3/5",
		"keys":          "acme 2/2, zed 1/2",
		"breaker-state": "1 failures within 1m0s open it for 1m0s: closed",
	} {
		if got := cell(role); got != want {
			t.Errorf("%s: %q, want %q", role, got, want)
		}
	}
	n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('section[data-pipeline="demo"] div[data-role="flow"] tbody tr').length`))
	if err != nil || n != 1 {
		t.Fatalf("%d rows (%v), want only a's", n, err)
	}
	// Live: a release and the breaker opening show within a refresh.
	if err := c.ReleaseLimits(ctx, p, "a", reqs[:2]); err != nil {
		t.Fatal(err)
	}
	if opened, err := c.BreakerFailed(ctx, "demo", "a", "t"); err != nil || !opened {
		t.Fatalf("open: %v %v", opened, err)
	}
	if err := chromedp.Do(bctx, chromedp.WaitVisible(row+` td[data-state="open"]`)); err != nil {
		t.Fatalf("open breaker: %v", err)
	}
	if got := cell("breaker-state"); !strings.Contains(got, ": open until ") {
		t.Errorf("open breaker: %q", got)
	}
	if got := cell("keys"); got != "acme 1/2" {
		t.Errorf("keys after releases: %q, want %q", got, "acme 1/2")
	}
}
