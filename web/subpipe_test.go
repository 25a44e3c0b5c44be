//go:build integration

package web_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// TestSubPipelineLinks: the graph draws a sub-pipeline step as a link to
// its pipeline and the failure handler apart; the parent's task page
// links to the child task, and the child's to its parent (issue 17).
func TestSubPipelineLinks(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [m]}\n  m: {pipeline: mailer}\n  alert: {handler: echo}\non_failure: alert\n",
		"name: mailer\nversion: 1.0.0\nsteps:\n  send: {handler: echo}\n")
	ctx, c, srv := e.ctx, e.c, e.srv
	s, err := c.Submit(ctx, "demo", []byte(`{}`), dsat.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d := e.firstToken(t, s.ID, "a")
	if _, err := c.Complete(ctx, d, []byte(`{}`), ""); err != nil {
		t.Fatal(err)
	}
	kid, _, err := c.StartChild(ctx, e.firstToken(t, s.ID, "m"))
	if err != nil {
		t.Fatal(err)
	}
	bctx := e.browser(t)
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible(`section.card[data-pipeline="demo"] g.node.sub[data-step="m"]`),
		chromedp.WaitVisible(`section.card[data-pipeline="demo"] g.node.onfailure[data-step="alert"]`),
		chromedp.Navigate(srv.URL+"/#/task/"+s.ID),
		chromedp.WaitVisible(`tr[data-step="m"] a[data-role="child"][href="#/task/`+kid+`"]`),
		chromedp.Click(`tr[data-step="m"] a[data-role="child"]`),
		chromedp.WaitVisible(`a[data-role="parent"][href="#/task/`+s.ID+`"]`),
	)
	if err != nil {
		t.Fatalf("sub-pipeline links: %v", err)
	}
}
