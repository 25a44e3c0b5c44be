//go:build integration

package web_test

import (
	"regexp"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// TestRetryDueAndFailedLabel: a RETRY event's due time shows as a time,
// not ms since the epoch, and the step's counter says it counts failed
// attempts, with a tooltip that says so in full (issue 14).
func TestRetryDueAndFailedLabel(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, backoff: {initial: 1h, max: 2h}}\n")
	ctx, c, srv := e.ctx, e.c, e.srv

	// The task's first attempt fails: ERROR, then RETRY due in about an hour.
	s, err := c.Submit(ctx, "demo", []byte(`{}`), dsat.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.firstToken(t, s.ID, "a")
	if _, _, err := c.Fail(ctx, d, dsat.Failure{Message: "flaky"}); err != nil {
		t.Fatal(err)
	}

	bctx := e.browser(t)
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/task/"+s.ID),
		chromedp.WaitVisible(`table[data-role="timeline"] tr[data-event="RETRY"]`),
	)
	if err != nil {
		t.Fatalf("task page: %v", err)
	}
	detail := textOf(t, bctx, `table[data-role="timeline"] tr[data-event="RETRY"] td.detail`)
	if regexp.MustCompile(`\d{13}`).MatchString(detail) || !regexp.MustCompile(`"due":"\d\d:\d\d:\d\d\.\d{3} \(in (3[0-9]{3}|[1-7][0-9]{3})\.\d s\)"`).MatchString(detail) {
		t.Fatalf("RETRY detail %q", detail)
	}

	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/"),
		chromedp.WaitVisible(`g[data-step="a"] text.fail`),
	)
	if err != nil {
		t.Fatalf("pipelines page: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.querySelector('g[data-step="a"] text.fail').textContent !== ""`)); err != nil {
		t.Fatal(err)
	}
	counts := textOf(t, bctx, `g[data-step="a"] text.fail`)
	tip, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('g[data-step="a"] [data-role="counts"] title').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(counts, "failed attempts 0") || !strings.Contains(tip, "not tasks") {
		t.Fatalf("counter %q, tooltip %q", counts, tip)
	}
}
