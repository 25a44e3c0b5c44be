//go:build integration

package web_test

import (
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBreakerBadge: a step's node shows a badge while its circuit breaker
// is open, then half open, and none once it closed (issue 16).
func TestBreakerBadge(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, breaker: {failures: 1, within: 1m, open_for: 1s}}\n")
	ctx, c, srv := e.ctx, e.c, e.srv
	bctx := e.browser(t)
	badge := `section[data-pipeline="demo"] g[data-step="a"] g[data-role="breaker"]`
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/#/"), chromedp.WaitReady(badge+`[data-state="closed"]`)); err != nil {
		t.Fatalf("closed breaker: %v", err)
	}
	if err := chromedp.Do(bctx, chromedp.WaitNotVisible(badge)); err != nil {
		t.Fatalf("a closed breaker's badge is visible: %v", err)
	}
	if opened, err := c.BreakerFailed(ctx, "demo", "a", "t"); err != nil || !opened {
		t.Fatalf("open: %v %v", opened, err)
	}
	text := func(state string) string {
		t.Helper()
		if err := chromedp.Do(bctx, chromedp.WaitVisible(badge+`[data-state="`+state+`"]`)); err != nil {
			t.Fatalf("%s breaker badge: %v", state, err)
		}
		s, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('`+badge+` text').textContent`))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	if s := text("open"); s != "breaker open" {
		t.Fatalf("open breaker badge %q", s)
	}
	time.Sleep(1100 * time.Millisecond) // open_for
	if won, err := c.BreakerProbe(ctx, "demo", "a", "t", time.Minute); err != nil || !won {
		t.Fatalf("probe: %v %v", won, err)
	}
	if s := text("half_open"); s != "half open" {
		t.Fatalf("half-open breaker badge %q", s)
	}
	if closed, err := c.BreakerSucceeded(ctx, "demo", "a", "t"); err != nil || !closed {
		t.Fatalf("close: %v %v", closed, err)
	}
	if err := chromedp.Do(bctx, chromedp.WaitReady(badge+`[data-state="closed"]`), chromedp.WaitNotVisible(badge)); err != nil {
		t.Fatalf("closed again: %v", err)
	}
}
