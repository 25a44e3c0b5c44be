//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestDashboard drives the dashboard of "dsat dev" in headless Chromium:
// the graph shows every step and each step's charts, a task submitted through the form reaches
// HAPPY_END on the live timeline with its result, and a dead letter is
// retried from the list. Screenshots go to integration/artifacts/.
func TestDashboard(t *testing.T) {
	fullSuite(t)
	ctx := browser(t, 1280, 900)
	dir := t.TempDir()
	src, _ := os.ReadFile("../examples/textstats.yaml")
	os.WriteFile(filepath.Join(dir, "textstats.yaml"), src, 0o644)
	// "once" fails the first time (dead letter), then succeeds on retry.
	os.WriteFile(filepath.Join(dir, "once.sh"), []byte("#!/bin/sh\nif [ -f marker ]; then cat; else touch marker; echo 'first run fails' >&2; exit 1; fi\n"), 0o755)
	os.WriteFile(filepath.Join(dir, "once.yaml"), []byte("name: once\nversion: 1.0.0\nsteps:\n  try: {handler: exec, with: {command: [sh, once.sh]}, retries: 0}\n"), 0o644)
	dev := startDsat(t, "dev", nil, "dev", "--addr", "127.0.0.1:0", "--pipelines", dir, "--log-format", "json")
	base := waitBanner(t, dev)

	artifacts, _ := filepath.Abs("artifacts")
	os.MkdirAll(artifacts, 0o755)
	shot := func(name string) {
		t.Helper()
		buf, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(artifacts, name), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// Pipelines: every step of textstats drawn, with live load.
	err := chromedp.Do(ctx,
		chromedp.Navigate(base+"/"),
		chromedp.WaitVisible(`section[data-pipeline="textstats"] g[data-step="report"]`),
	)
	if err != nil {
		t.Fatalf("pipelines page: %v\n%s", err, readFile(dev.log))
	}
	steps, err := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('section[data-pipeline="textstats"] g[data-step]')].map(g => g.dataset.step)`))
	if err != nil || strings.Join(steps, ",") != "intake,enrich,classify,page,queue,report" {
		t.Fatalf("graph steps %v %v", steps, err)
	}
	labels, _ := chromedp.Run(ctx, chromedp.Evaluate[[]string](`[...document.querySelectorAll('section[data-pipeline="textstats"] .edge-label')].map(e => e.textContent)`))
	if !strings.Contains(strings.Join(labels, ","), "urgent") || !strings.Contains(strings.Join(labels, ","), "fan-out") {
		t.Fatalf("edge labels %v", labels)
	}

	// Submit through the form; the task page shows HAPPY_END and the result.
	err = chromedp.Do(ctx,
		chromedp.SetValue(`form[data-pipeline="textstats"] textarea`, `{"kind":"urgent","text":"from the browser"}`),
		chromedp.Click(`form[data-pipeline="textstats"] button[type="submit"]`),
		chromedp.WaitVisible(`table[data-role="timeline"] tr[data-event="HAPPY_END"]`),
		chromedp.WaitVisible(`span[data-status="succeeded"]`),
	)
	if err != nil {
		t.Fatalf("task page: %v", err)
	}
	result, err := chromedp.Run(ctx, chromedp.Text(`pre[data-role="result"]`))
	if err != nil {
		t.Fatal(err)
	}
	shot("dashboard-task.png")
	if !strings.Contains(result, "enrich") || !strings.Contains(result, "from the browser") {
		t.Fatalf("result on the page: %s", result)
	}
	// The pipelines page after the task: live load figures.
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/"), chromedp.WaitVisible(`form[data-pipeline="textstats"] textarea`)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2500 * time.Millisecond)
	// The step charts (issue 18) show the task: the stats are flushed every
	// 2 s and the page reads them every 10 s.
	err = chromedp.Do(ctx, chromedp.WaitReady(`section[data-pipeline="textstats"] svg[data-chart="throughput"][data-step="intake"] path[data-series="done"]:not([data-nonzero="0"])`))
	if err != nil {
		t.Fatalf("no throughput chart with data: %v", err)
	}
	shot("dashboard-pipelines.png")
	// Invalid JSON is refused before sending.
	err = chromedp.Do(ctx,
		chromedp.SetValue(`form[data-pipeline="textstats"] textarea`, `{oops`),
		chromedp.Click(`form[data-pipeline="textstats"] button[type="submit"]`),
	)
	msg, _ := chromedp.Run(ctx, chromedp.Text(`form[data-pipeline="textstats"] [data-role="submit-error"]`))
	if err != nil || !strings.Contains(msg, "Not valid JSON") {
		t.Fatalf("invalid JSON: %v %q", err, msg)
	}

	// A dead letter, retried from the list.
	id := submitHTTP(t, base, "once")
	waitStatus(t, base, id, "failed")
	err = chromedp.Do(ctx,
		chromedp.Navigate(base+"/#/dead"),
		chromedp.WaitVisible(`section[data-dead="once"] tr[data-task="`+id+`"] button[data-action="retry"]`),
	)
	if err != nil {
		t.Fatalf("dead letters page: %v", err)
	}
	shot("dashboard-dead.png")
	err = chromedp.Do(ctx,
		chromedp.Click(`section[data-dead="once"] tr[data-task="`+id+`"] button[data-action="retry"]`),
		chromedp.WaitVisible(`span[data-status="succeeded"]`),
	)
	if err != nil {
		t.Fatalf("retry from the dead letters: %v", err)
	}
	waitStatus(t, base, id, "succeeded")
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/#/satellites"), chromedp.WaitVisible(`table[data-role="satellites"] td`)); err != nil {
		t.Fatal(err)
	}
	shot("dashboard-satellites.png")
	t.Logf("screenshots in %s", artifacts)
}

func waitBanner(t *testing.T, p *dsatProc) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		for _, line := range strings.Split(readFile(p.log), "\n") {
			if i := strings.Index(line, "API and dashboard:"); i >= 0 {
				return strings.TrimSpace(line[i+len("API and dashboard:"):])
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("dsat dev did not print its URL:\n%s", readFile(p.log))
	return ""
}

func submitHTTP(t *testing.T, base, pipeline string) string {
	t.Helper()
	res, err := http.Post(base+"/v1/pipelines/"+pipeline+"/tasks", "application/json", strings.NewReader(`{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var out struct{ ID string }
	json.NewDecoder(res.Body).Decode(&out)
	if out.ID == "" {
		t.Fatalf("submit to %s: %d", pipeline, res.StatusCode)
	}
	return out.ID
}

func waitStatus(t *testing.T, base, id, want string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		res, err := http.Get(base + "/v1/tasks/" + id)
		if err == nil {
			var st struct{ Status string }
			json.NewDecoder(res.Body).Decode(&st)
			res.Body.Close()
			if st.Status == want {
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("task %s never became %s", id, want)
}

// TestDashboardWithAuth: with tokens on, the dashboard says it needs one;
// once entered it loads pipelines and follows a task's live timeline
// (EventSource with ?access_token=).
func TestDashboardWithAuth(t *testing.T) {
	fullSuite(t)
	ctx := browser(t, 420, 900)
	dev := startDsat(t, "dev", nil, "dev", "--addr", "127.0.0.1:0", "--token", "s3cret", "--log-format", "json")
	base := waitBanner(t, dev)
	if err := chromedp.Do(ctx, chromedp.Navigate(base+"/"), chromedp.WaitVisible(`#banner:not([hidden])`)); err != nil {
		t.Fatalf("no banner without a token: %v", err)
	}
	banner, _ := chromedp.Run(ctx, chromedp.Text(`#banner`))
	if !strings.Contains(banner, "token") {
		t.Fatalf("banner %q", banner)
	}
	err := chromedp.Do(ctx,
		chromedp.SetValue(`#token`, "s3cret"),
		chromedp.Click(`#auth button`),
		chromedp.WaitVisible(`section[data-pipeline="textstats"] g[data-step="report"]`),
		chromedp.Click(`form[data-pipeline="textstats"] button[type="submit"]`),
		chromedp.WaitVisible(`table[data-role="timeline"] tr[data-event="HAPPY_END"]`),
	)
	if err != nil {
		t.Fatalf("with the token: %v", err)
	}
	// On a narrow (420 px) screen nothing overflows the page sideways.
	wide, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth + 1`))
	if err != nil || wide {
		t.Fatalf("the task page is wider than a narrow screen: %v", err)
	}
}

// browser starts headless Chromium (skipped without it, unless
// DSAT_REQUIRE_BROWSER=1) and returns a chromedp context.
func browser(t *testing.T, width, height int) context.Context {
	t.Helper()
	chrome, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("DSAT_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium not found and DSAT_REQUIRE_BROWSER=1")
		}
		t.Skip("chromium not found: apt-get install chromium to run the browser test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.NoFirstRun, chromedp.Flag("disable-background-networking", true), chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true), chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(width, height))
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelC := chromedp.NewContext(actx)
	ctx, cancelT := context.WithTimeout(ctx, 90*time.Second)
	t.Cleanup(func() { cancelT(); cancelC(); cancelA() })
	return ctx
}
