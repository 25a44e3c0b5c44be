package web_test

import (
	"context"
	"net/http/httptest"
	"os"
	"os/exec"
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

// browserEnv is what the dashboard's browser tests share: an API with the
// dashboard on miniredis for one pipeline, and headless Chromium.
type browserEnv struct {
	ctx    context.Context
	rdb    *redis.Client
	c      *dsat.Client
	srv    *httptest.Server
	chrome string
}

// newBrowserEnv skips the test without chromium (fails with
// DSAT_REQUIRE_BROWSER=1).
func newBrowserEnv(t *testing.T, pipelineYAML string) *browserEnv {
	t.Helper()
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("DSAT_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium not found and DSAT_REQUIRE_BROWSER=1")
		}
		t.Skip("chromium not found: apt-get install chromium to run the browser test")
	}
	e := newDashboardEnv(t, pipelineYAML)
	e.chrome = chrome
	return e
}

// newDashboardEnv is a browserEnv without a browser: the API with the
// dashboard, for plain HTTP requests.
func newDashboardEnv(t *testing.T, pipelineYAML string) *browserEnv {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	p, err := dsat.ParsePipeline("demo.yaml", []byte(pipelineYAML))
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
	return &browserEnv{ctx: context.Background(), rdb: rdb, c: c, srv: srv}
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
