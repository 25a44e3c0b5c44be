//go:build integration

package web_test

import (
	"context"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/dsat-dev/dsat/dsat"
)

// browserEnv is what the dashboard's browser tests share: the API with
// the dashboard (dashboardEnv), and headless Chromium.
type browserEnv struct {
	*dashboardEnv
	chrome string
}

// newBrowserEnv skips the test without chromium (fails with
// DSAT_REQUIRE_BROWSER=1).
func newBrowserEnv(t *testing.T, pipelineYAML string, more ...string) *browserEnv {
	t.Helper()
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("DSAT_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium not found and DSAT_REQUIRE_BROWSER=1")
		}
		t.Skip("chromium not found: apt-get install chromium to run the browser test")
	}
	return &browserEnv{dashboardEnv: newDashboardEnv(t, pipelineYAML, more...), chrome: chrome}
}

// firstToken reads the task's token waiting at step, as a worker would.
func (e *browserEnv) firstToken(t *testing.T, task, step string) dsat.Delivery {
	t.Helper()
	tid, _ := dsat.ParseTaskID(task)
	msgs, _ := e.rdb.XRange(e.ctx, e.c.Keys().Step(tid.Partition, step), "-", "+").Result()
	if len(msgs) == 0 {
		t.Fatalf("no token of %s at step %s", task, step)
	}
	env, err := dsat.ParseEnvelope(msgs[0].Values, 0)
	if err != nil {
		t.Fatal(err)
	}
	return dsat.Delivery{Envelope: env, EntryID: msgs[0].ID, Worker: "w"}
}

// browser starts headless Chromium, stopped when the test ends.
func (e *browserEnv) browser(t *testing.T) context.Context {
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(e.chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(e.ctx, opts...)
	bctx, cancelC := chromedp.NewContext(actx)
	bctx, cancelT := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return bctx
}

// textOf is the text of the first element sel matches in the page.
func textOf(t *testing.T, bctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('`+sel+`').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	return s
}
