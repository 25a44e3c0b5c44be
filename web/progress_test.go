//go:build integration

package web_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// TestProgressBar: the task page shows a running step's progress as a bar
// (issue 18), and updates it live from the feed's PROGRESS events.
func TestProgressBar(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
	ctx, c, srv := e.ctx, e.c, e.srv
	s, err := c.Submit(ctx, "demo", []byte(`{}`), dsat.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.firstToken(t, s.ID, "a")
	if _, err := c.Begin(ctx, d); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Progress(ctx, d, 0.25, "a quarter"); err != nil {
		t.Fatal(err)
	}
	cell := `tr[data-step="a"] td[data-role="progress"]`
	bctx := e.browser(t)
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/task/"+s.ID),
		chromedp.WaitVisible(cell+` progress[value="0.25"]`),
		chromedp.WaitVisible(`table[data-role="timeline"] tr[data-event="PROGRESS"]`),
	)
	if err != nil {
		t.Fatalf("progress bar: %v", err)
	}
	if _, err := c.Progress(ctx, d, 0.75, "three quarters"); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.WaitVisible(cell+` progress[value="0.75"]`)); err != nil {
		t.Fatalf("live progress: %v", err)
	}
	if text := textOf(t, bctx, cell); !strings.Contains(text, "75% three quarters") {
		t.Fatalf("live progress: %q", text)
	}
}
