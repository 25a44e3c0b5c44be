//go:build integration

package web_test

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// TestDrainingCard: beside demo 2.0, a draining demo 1.0 has a card of its
// own that says it is draining, draws 1.0's graph (its step "old", which
// 2.0 lacks) and has no submit form; 2.0's card has one.
func TestDrainingCard(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 2.0.0\nsteps:\n  a: {handler: echo}\n",
		"# draining\nname: demo\nversion: 1.0.0\nsteps:\n  old: {handler: echo}\n")
	bctx := e.browser(t)
	v1, v2 := `section[data-version="1.0.0"]`, `section[data-version="2.0.0"]`
	err := chromedp.Do(bctx,
		chromedp.Navigate(e.srv.URL+"/#/"),
		chromedp.WaitVisible(v1+` .graph svg`),
		chromedp.WaitVisible(v2+` form[data-pipeline="demo"]`),
	)
	if err != nil {
		t.Fatal(err)
	}
	if h := textOf(t, bctx, v1+" h2"); !strings.Contains(h, "draining") {
		t.Errorf("1.0's heading %q does not say draining", h)
	}
	if h := textOf(t, bctx, v2+" h2"); strings.Contains(h, "draining") {
		t.Errorf("2.0's heading %q says draining", h)
	}
	if g := textOf(t, bctx, v1+" .graph"); !strings.Contains(g, "old") {
		t.Errorf("1.0's graph %q does not draw its step old", g)
	}
	if forms, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('`+v1+` form').length`)); err != nil || forms != 0 {
		t.Errorf("1.0's card has %d forms (%v), want none", forms, err)
	}
}
