//go:build integration

package web_test

import (
	"testing"

	"github.com/chromedp/chromedp"
)

// TestPauseButton: a pipeline's card pauses and resumes it (issue 16), and
// shows a pause made elsewhere.
func TestPauseButton(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
	ctx, c, srv := e.ctx, e.c, e.srv
	paused := func() bool {
		t.Helper()
		p, err := c.ListPaused(ctx)
		if err != nil {
			t.Fatal(err)
		}
		_, on := p["demo"]
		return on
	}
	bctx := e.browser(t)
	btn := `section[data-pipeline="demo"] button[data-role="pause"]`
	err := chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/"),
		chromedp.WaitVisible(btn+`[data-paused="false"]`),
		chromedp.Click(btn),
		chromedp.WaitVisible(btn+`[data-paused="true"]`),
	)
	if err != nil || !paused() {
		t.Fatalf("pause: %v, paused %v", err, paused())
	}
	err = chromedp.Do(bctx, chromedp.Click(btn), chromedp.WaitVisible(btn+`[data-paused="false"]`))
	if err != nil || paused() {
		t.Fatalf("resume: %v, paused %v", err, paused())
	}
	if err := c.Pause(ctx, "demo", ""); err != nil {
		t.Fatal(err)
	}
	if err := chromedp.Do(bctx, chromedp.WaitVisible(btn+`[data-paused="true"]`)); err != nil {
		t.Fatalf("a pause made elsewhere is not shown: %v", err)
	}
}
