//go:build integration

package web_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// TestTaskBrowser: the Tasks page filters by pipeline and status (the
// form, and the hash), pages, clicks through to a task, retries the failed
// tasks and cancels the pending ones with its bulk buttons; the dead
// letters page retries all of a pipeline's (issue 18).
func TestTaskBrowser(t *testing.T) {
	e := newBrowserEnv(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
	ctx, c, srv := e.ctx, e.c, e.srv
	payloads := make([][]byte, 60)
	for i := range payloads {
		payloads[i] = []byte(`{}`)
	}
	ids, err := c.SubmitBatch(ctx, "demo", payloads)
	if err != nil {
		t.Fatal(err)
	}
	// Three tasks fail for good.
	tid, _ := dsat.ParseTaskID(ids[0])
	msgs, err := e.rdb.XRange(ctx, c.Keys().Step(tid.Partition, "a"), "-", "+").Result()
	if err != nil || len(msgs) != 60 {
		t.Fatalf("tokens: %d %v", len(msgs), err)
	}
	for _, i := range []int{5, 17, 42} {
		env, err := dsat.ParseEnvelope(msgs[i].Values, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Fail(ctx, dsat.Delivery{Envelope: env, EntryID: msgs[i].ID, Worker: "w"}, dsat.Failure{Message: "broken", Final: true}); err != nil {
			t.Fatal(err)
		}
	}
	bctx := e.browser(t)
	count := func(sel string) int {
		t.Helper()
		n, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('`+sel+`').length`))
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	list := `table[data-role="task-list"] tr[data-task]`
	// Every task of demo, 50 a page: page 2 has the 10 oldest.
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/tasks?pipeline=demo"),
		chromedp.WaitVisible(`span[data-role="page-info"][data-page="1"]`),
		chromedp.WaitVisible(list+`[data-task="`+ids[59]+`"]`),
	)
	if err != nil || count(list) != 50 {
		t.Fatalf("first page: %v, %d rows", err, count(list))
	}
	err = chromedp.Do(bctx, chromedp.Click(`button[data-action="next-page"]`),
		chromedp.WaitVisible(`span[data-role="page-info"][data-page="2"]`), chromedp.WaitVisible(list+`[data-task="`+ids[0]+`"]`))
	if err != nil || count(list) != 10 {
		t.Fatalf("second page: %v, %d rows", err, count(list))
	}
	// The form: status failed.
	err = chromedp.Do(bctx,
		chromedp.SetValue(`select[data-role="filter-status"]`, "failed"),
		chromedp.Click(`form[data-role="task-filters"] button[type="submit"]`),
		chromedp.WaitVisible(list+`[data-task="`+ids[5]+`"][data-status="failed"]`),
	)
	if err != nil || count(list) != 3 || count(list+`[data-status="failed"]`) != 3 {
		t.Fatalf("failed tasks: %v, %d rows", err, count(list))
	}
	if dir := os.Getenv("DSAT_SCREENSHOT_DIR"); dir != "" {
		// The README's picture of the task browser.
		if err := chromedp.Do(bctx, chromedp.EmulateViewport(1100, 560)); err != nil {
			t.Fatal(err)
		}
		buf, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "dashboard-tasks.png"), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Retry them from the list: the button asks, the second click acts.
	err = chromedp.Do(bctx,
		chromedp.Click(`button[data-action="retry-failed"]`),
		chromedp.WaitVisible(`button[data-action="retry-failed"][data-armed="true"]`),
		chromedp.Click(`button[data-action="retry-failed"]`),
		chromedp.WaitVisible(`div[data-role="bulk-result"][data-count="3"]`),
	)
	if err != nil {
		t.Fatalf("retry failed: %v", err)
	}
	for _, i := range []int{5, 17, 42} {
		if st, _ := c.Get(ctx, ids[i]); st.Status != dsat.StatusRunning {
			t.Errorf("task %d after the bulk retry: %s", i, st.Status)
		}
	}
	// Cancel the pending ones (57).
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/tasks?pipeline=demo&status=pending"),
		chromedp.WaitVisible(`span[data-role="page-info"][data-page="1"]`),
		chromedp.Click(`button[data-action="cancel-all"]`),
		chromedp.Click(`button[data-action="cancel-all"]`),
		chromedp.WaitVisible(`div[data-role="bulk-result"][data-count="57"]`),
	)
	if err != nil {
		t.Fatalf("cancel pending: %v", err)
	}
	page, err := c.Search(ctx, dsat.TaskQuery{Pipeline: "demo", Status: []string{dsat.StatusCancelled}, Limit: 100})
	if err != nil || len(page.Items) != 57 {
		t.Fatalf("cancelled: %d %v", len(page.Items), err)
	}
	// Click through to a task.
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/tasks?status=running"),
		chromedp.WaitVisible(list+`[data-task="`+ids[42]+`"]`),
		chromedp.Click(list+`[data-task="`+ids[42]+`"] a`),
		chromedp.WaitVisible(`span[data-status="running"]`),
	)
	if err != nil {
		t.Fatalf("click through: %v", err)
	}
	if url, _ := chromedp.Run(bctx, chromedp.Evaluate[string](`location.hash`)); !strings.HasPrefix(url, "#/task/"+ids[42]) {
		t.Fatalf("clicked through to %s", url)
	}

	// Dead letters: the retried tasks die again, "Retry all" re-drives them.
	msgs, _ = e.rdb.XRange(ctx, c.Keys().Step(tid.Partition, "a"), "-", "+").Result()
	died := 0
	for _, m := range msgs {
		env, err := dsat.ParseEnvelope(m.Values, 0)
		if err != nil {
			t.Fatal(err)
		}
		if o, _, err := c.Fail(ctx, dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: "w"}, dsat.Failure{Message: "again", Final: true}); err == nil && o == dsat.Applied {
			died++
		}
	}
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/dead"),
		chromedp.WaitVisible(`section[data-dead="demo"] tr[data-task="`+ids[42]+`"]`),
		chromedp.Click(`section[data-dead="demo"] button[data-action="retry-all"]`),
		chromedp.Click(`section[data-dead="demo"] button[data-action="retry-all"]`),
		chromedp.WaitVisible(`section[data-dead="demo"] span[data-role="dead-retry-result"][data-count="3"]`),
	)
	if err != nil {
		t.Fatalf("retry all dead letters (%d died again): %v", died, err)
	}
}
