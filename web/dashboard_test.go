//go:build integration

package web_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/workers"
)

// TestTimelineOfARetriedTask: the task page of a task that died and was
// retried shows the old DEAD and goes on to HAPPY_END (issue 13, item 6).
func TestTimelineOfARetriedTask(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [b]}\n  b: {handler: echo}\n")
	ctx, c, srv := e.ctx, e.c, e.srv

	// The task dies at a (its token failed by hand), is retried, succeeds.
	s, err := c.Submit(ctx, "demo", []byte(`{}`), dsat.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.firstToken(t, s.ID, "a")
	if _, _, err := c.Fail(ctx, d, dsat.Failure{Message: "broken", Final: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Retry(ctx, s.ID); err != nil {
		t.Fatal(err)
	}
	mux := workers.NewMux()
	workers.RegisterBuiltins(mux, 0)
	sat, err := workers.New(c, mux, workers.Config{ID: "sat1", Block: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if err := sat.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sat.Stop(context.Background()) })
	deadline := time.Now().Add(10 * time.Second)
	for {
		st, err := c.Get(ctx, s.ID)
		if err == nil && st.Status == dsat.StatusSucceeded {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the retried task did not succeed: %+v %v", st, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	bctx := e.browser(t)
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/task/"+s.ID),
		chromedp.WaitVisible(`span[data-status="succeeded"]`),
		chromedp.WaitVisible(`table[data-role="timeline"] tr[data-event="HAPPY_END"]`),
	)
	if err != nil {
		t.Fatalf("task page: %v", err)
	}
	events, err := chromedp.Run(bctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('table[data-role="timeline"] tr[data-event]')].map(r => r.dataset.event)`))
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(events, ",")
	if !strings.Contains(got, "DEAD") || !strings.HasSuffix(got, "HAPPY_END") {
		t.Fatalf("timeline %s", got)
	}
}
