package httpapi

import (
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestStatsRoute: GET /v1/pipelines/{name}/stats answers the recorded
// series (every step, one value per bucket of the window) and refuses a
// bad window, an unknown or empty parameter and an unknown pipeline.
func TestStatsRoute(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		var run dsat.LatencyHistogram
		for i := 1; i <= 100; i++ {
			run.Add(time.Duration(i) * time.Millisecond)
		}
		if err := e.c.RecordStats(t.Context(), time.Now(), []dsat.StepSample{{Pipeline: "demo", Step: "b", Ended: 100, Failed: 3, Run: run}}); err != nil {
			t.Fatal(err)
		}
		r := e.do("GET", "/v1/pipelines/demo/stats?window=30s", "", "")
		if r.status != 200 {
			t.Fatalf("stats: %d %s", r.status, r.raw)
		}
		if times := r.body["times"].([]any); len(times) != 3 || r.body["bucket_seconds"].(float64) != 10 {
			t.Fatalf("window 30s: %s", r.raw)
		}
		steps := r.body["steps"].(map[string]any)
		if len(steps) != 3 {
			t.Fatalf("want the 3 steps of demo: %s", r.raw)
		}
		tot := steps["b"].(map[string]any)["totals"].(map[string]any)
		if tot["ended"].(float64) != 100 || tot["failed"].(float64) != 3 {
			t.Fatalf("totals of b: %v", tot)
		}
		if p95, _ := tot["run_p95_ms"].(float64); p95 < 85 || p95 > 105 {
			t.Fatalf("run p95 of 1..100 ms: %v", tot["run_p95_ms"])
		}
		if e.do("GET", "/v1/pipelines/demo/stats", "", "").status != 200 {
			t.Fatal("the default window")
		}
		for _, q := range []string{"window=5s", "window=16m", "window=soon", "window=", "from=1", "window=1m&window=2m"} {
			if r := e.do("GET", "/v1/pipelines/demo/stats?"+q, "", ""); r.status != 400 || r.header.Get("Content-Type") != "application/problem+json" {
				t.Errorf("?%s: %d %s, want a 400 problem", q, r.status, r.raw)
			}
		}
		if r := e.do("GET", "/v1/pipelines/nope/stats", "", ""); r.status != 404 {
			t.Fatalf("unknown pipeline: %d", r.status)
		}
	})
}
