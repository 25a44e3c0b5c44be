package web_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/chromedp/chromedp"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/httpapi"
	"github.com/dsat-dev/dsat/web"
)

// TestRetryDueAndFailedLabel: a RETRY event's due time shows as a time,
// not ms since the epoch, and the step's counter says it counts failed
// attempts, with a tooltip that says so in full (issue 14).
func TestRetryDueAndFailedLabel(t *testing.T) {
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("DSAT_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium not found and DSAT_REQUIRE_BROWSER=1")
		}
		t.Skip("chromium not found: apt-get install chromium to run the browser test")
	}
	ctx := context.Background()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	p, err := dsat.ParsePipeline("demo.yaml", []byte("name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, backoff: {initial: 1h, max: 2h}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.NewRouter(httpapi.Config{Client: c, Logger: zerolog.Nop(), Static: web.Handler()})
	srv := httptest.NewServer(api)
	t.Cleanup(func() { api.Close(); srv.Close() })

	// The task's first attempt fails: ERROR, then RETRY due in about an hour.
	s, err := c.Submit(ctx, "demo", []byte(`{}`), dsat.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := dsat.ParseTaskID(s.ID)
	msgs, _ := rdb.XRange(ctx, c.Keys().Step(tid.Partition, "a"), "-", "+").Result()
	env, err := dsat.ParseEnvelope(msgs[0].Values, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Fail(ctx, dsat.Delivery{Envelope: env, EntryID: msgs[0].ID, Worker: "w"}, dsat.Failure{Message: "flaky"}); err != nil {
		t.Fatal(err)
	}

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelC := chromedp.NewContext(actx)
	bctx, cancelT := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	err = chromedp.Do(bctx,
		chromedp.Navigate(srv.URL+"/#/task/"+s.ID),
		chromedp.WaitVisible(`table[data-role="timeline"] tr[data-event="RETRY"]`),
	)
	if err != nil {
		t.Fatalf("task page: %v", err)
	}
	detail, err := chromedp.Run(bctx, chromedp.TextContent(`table[data-role="timeline"] tr[data-event="RETRY"] td.detail`))
	if err != nil {
		t.Fatal(err)
	}
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
	counts, err := chromedp.Run(bctx, chromedp.TextContent(`g[data-step="a"] text.fail`))
	if err != nil {
		t.Fatal(err)
	}
	tip, err := chromedp.Run(bctx, chromedp.Evaluate[string](`document.querySelector('g[data-step="a"] [data-role="counts"] title').textContent`))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(counts, "failed attempts 0") || !strings.Contains(tip, "not tasks") {
		t.Fatalf("counter %q, tooltip %q", counts, tip)
	}
}
