//go:build integration

package web_test

import (
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// TestSchedulesPage: the schedules page lists each schedule with its next
// run, and its button pauses and resumes it (issue 15).
func TestSchedulesPage(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
	ctx, c, srv := e.ctx, e.c, e.srv
	for _, s := range []dsat.ScheduleSpec{
		{ID: "tick", Pipeline: "demo", Every: "1h"},
		{ID: "nightly", Pipeline: "demo", Cron: "0 3 * * *", Timezone: "Europe/Paris", Paused: true},
	} {
		if _, _, err := c.PutSchedule(ctx, s); err != nil {
			t.Fatal(err)
		}
	}
	bctx := e.browser(t)
	err := chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/schedules"),
		chromedp.WaitVisible(`tr[data-schedule="tick"][data-paused="false"] button[data-action="pause"]`),
		chromedp.WaitVisible(`tr[data-schedule="nightly"][data-paused="true"] button[data-action="resume"]`),
	)
	if err != nil {
		t.Fatalf("schedules page: %v", err)
	}
	next := textOf(t, bctx, `tr[data-schedule="tick"] td[data-role="next-run"]`)
	when := textOf(t, bctx, `tr[data-schedule="nightly"] td:nth-child(3)`)
	if next == "" || next == "—" || next == "paused" || when != "cron 0 3 * * * (Europe/Paris)" {
		t.Fatalf("next run %q, when %q", next, when)
	}
	paused := func(id string) bool {
		t.Helper()
		info, err := c.GetSchedule(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		return info.Paused
	}
	err = chromedp.Do(bctx,
		chromedp.Click(`tr[data-schedule="tick"] button[data-action="pause"]`),
		chromedp.WaitVisible(`tr[data-schedule="tick"][data-paused="true"] button[data-action="resume"]`),
	)
	if err != nil || !paused("tick") {
		t.Fatalf("pause: %v, paused %v", err, paused("tick"))
	}
	err = chromedp.Do(bctx,
		chromedp.Click(`tr[data-schedule="nightly"] button[data-action="resume"]`),
		chromedp.WaitVisible(`tr[data-schedule="nightly"][data-paused="false"] button[data-action="pause"]`),
	)
	if err != nil || paused("nightly") {
		t.Fatalf("resume: %v, paused %v", err, paused("nightly"))
	}
}
