package web_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
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
	"github.com/dsat-dev/dsat/workers"
)

// TestTimelineOfARetriedTask: the task page of a task that died and was
// retried shows the old DEAD and goes on to HAPPY_END (issue 13, item 6).
func TestTimelineOfARetriedTask(t *testing.T) {
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
	p, err := dsat.ParsePipeline("demo.yaml", []byte("name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [b]}\n  b: {handler: echo}\n"))
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

	// The task dies at a (its token failed by hand), is retried, succeeds.
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
	if _, _, err := c.Fail(ctx, dsat.Delivery{Envelope: env, EntryID: msgs[0].ID, Worker: "w"}, dsat.Failure{Message: "broken", Final: true}); err != nil {
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

	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()))
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelC := chromedp.NewContext(actx)
	bctx, cancelT := context.WithTimeout(bctx, 60*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
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
