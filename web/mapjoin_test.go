//go:build integration

package web_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// TestMapStackedNode: the steps a map's items run are drawn as a stack of
// cards with how many run at once, the map's edge says so, and a task's
// steps list the mapped step's items by state (issue 17).
func TestMapStackedNode(t *testing.T) {
	e := newBrowserEnv(t, `name: demo
version: 1.0.0
steps:
  split: {handler: echo, map: pages, next: [ocr]}
  ocr: {handler: echo, max_parallel: 50, next: [collect]}
  collect: {handler: echo, join: all}
`)
	ctx, c, srv := e.ctx, e.c, e.srv
	s, err := c.Submit(ctx, "demo", []byte(`{"pages":[1,2,3]}`), dsat.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.firstToken(t, s.ID, "split")
	if _, err := c.Complete(ctx, d, d.Payload, ""); err != nil {
		t.Fatal(err)
	}

	bctx := e.browser(t)
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/#/"), chromedp.WaitVisible(`g[data-step="ocr"]`)); err != nil {
		t.Fatalf("pipelines page: %v", err)
	}
	stacks, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('g.mapped[data-step="ocr"] rect.stack').length`))
	if err != nil {
		t.Fatal(err)
	}
	// Read in one evaluation (textOf): the page redraws live, and a node
	// found by one call may be gone at the next.
	count := textOf(t, bctx, `g[data-step="ocr"] text[data-role="items"]`)
	edge, err := chromedp.Run(bctx, chromedp.Evaluate[string](`[...document.querySelectorAll('text.edge-label')].map((x) => x.textContent).join(",")`))
	if err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.Navigate(srv.URL+"/#/task/"+s.ID), chromedp.WaitVisible(`tr[data-step="ocr"]`)); err != nil {
		t.Fatalf("task page: %v", err)
	}
	state := textOf(t, bctx, `tr[data-step="ocr"] td:nth-child(2)`)
	if stacks != 2 || count != "×50 at once" || !strings.Contains(edge, "map pages") {
		t.Fatalf("stack of %d cards, count %q, edge labels %q", stacks, count, edge)
	}
	if !strings.Contains(state, "items queued 3") {
		t.Fatalf("ocr's state cell %q", state)
	}
}
