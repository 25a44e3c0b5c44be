package httpapi

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestPauseAndResume: pause and resume a pipeline or a step; the
// pipeline's view shows what is paused; unknown names are 404s.
func TestPauseAndResume(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	check := func(r resp, want string) {
		t.Helper()
		if r.status != 200 || strings.TrimSpace(r.raw) != want {
			t.Fatalf("got %d %s, want 200 %s", r.status, r.raw, want)
		}
	}
	check(e.do("POST", "/v1/pipelines/demo/pause?step=b", "", ""), `{"pipeline":"demo","step":"b","paused":true}`)
	g := e.do("GET", "/v1/pipelines/demo", "", "")
	if !strings.Contains(g.raw, `"name":"b"`) || strings.Count(g.raw, `"paused":true`) != 1 {
		t.Fatalf("pipeline view with b paused: %s", g.raw)
	}
	check(e.do("POST", "/v1/pipelines/demo/pause", "", ""), `{"pipeline":"demo","paused":true}`)
	check(e.do("POST", "/v1/pipelines/demo/resume?step=b", "", ""), `{"pipeline":"demo","step":"b","paused":true}`)
	check(e.do("POST", "/v1/pipelines/demo/resume", "", ""), `{"pipeline":"demo","paused":false}`)
	if g := e.do("GET", "/v1/pipelines", "", ""); strings.Contains(g.raw, `"paused"`) {
		t.Fatalf("nothing paused, yet: %s", g.raw)
	}
	for path, typ := range map[string]string{"/v1/pipelines/nope/pause": "pipeline-not-found", "/v1/pipelines/demo/pause?step=nope": "step-not-found"} {
		if r := e.do("POST", path, "", ""); r.status != 404 || !strings.Contains(r.raw, typ) {
			t.Errorf("%s: %d %s", path, r.status, r.raw)
		}
	}
	if r := e.do("POST", "/v1/pipelines/demo/pause?step=", "", ""); r.status != 400 || !strings.Contains(r.raw, "is empty") {
		t.Errorf("an empty step: %d %s", r.status, r.raw)
	}
	if g := e.do("GET", "/v1/pipelines/demo", "", ""); strings.Contains(g.raw, `"paused":true`) {
		t.Errorf("an empty step paused the pipeline: %s", g.raw)
	}
}

// TestBacklogFullIs429: a full entry backlog is a 429 with Retry-After.
func TestBacklogFullIs429(t *testing.T) {
	t.Parallel()
	w := httptest.NewRecorder()
	writeError(w, httptest.NewRequest("POST", "/v1/pipelines/p/tasks", nil), fmt.Errorf("%w: 3 tokens wait", dsat.ErrBacklogFull))
	if w.Code != http.StatusTooManyRequests || w.Header().Get("Retry-After") == "" || !strings.Contains(w.Body.String(), "backlog-full") {
		t.Fatalf("%d %v %s", w.Code, w.Header(), w.Body)
	}
}

// TestLimitsInPipelineView: a step's limits, and the use of its own ones
// now with its busiest fairness keys, are in GET /v1/pipelines/{name}.
func TestLimitsInPipelineView(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	g := e.do("GET", "/v1/pipelines/demo", "", "")
	if !strings.Contains(g.raw, `"limits":{"rate":"100000/s","key":"customer","running_per_key":1000,"usage":{"running":0,"rate_used":0}}`) {
		t.Fatalf("limits: %s", g.raw)
	}
	if g = e.do("GET", "/v1/pipelines", "", ""); !strings.Contains(g.raw, `"limits":{"rate":"100000/s","key":"customer","running_per_key":1000}`) {
		t.Fatalf("limits in the list: %s", g.raw)
	}
	// The busiest fairness keys, with their running permits.
	p, _ := e.c.Pipeline("demo")
	reqs := []dsat.LimitRequest{{ID: "1", Key: "zed"}, {ID: "2", Key: "acme"}, {ID: "3", Key: "acme"}}
	granted := time.Now()
	if _, err := e.c.AcquireLimits(context.Background(), p, "c", reqs, time.Minute); err != nil {
		t.Fatal(err)
	}
	g = e.do("GET", "/v1/pipelines/demo", "", "")
	if !strings.Contains(g.raw, `"keys":[{"key":"acme","running":2},{"key":"zed","running":1}]}`) {
		t.Fatalf("busiest keys: %s", g.raw)
	}
	// The 3 rate grants count for the rate's period, a second: a loaded
	// machine may answer later (CI once did).
	if !strings.Contains(g.raw, `"usage":{"running":0,"rate_used":3,`) && time.Since(granted) < 900*time.Millisecond {
		t.Fatalf("rate used: %s", g.raw)
	}
}

// TestBreakerInPipelineView: a step's breaker settings, and its state
// while it is open, are in GET /v1/pipelines/{name}; its transitions are
// BREAKER events on the pipeline's live feed (once each, not per
// partition) and in the metrics.
func TestBreakerInPipelineView(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		g := e.do("GET", "/v1/pipelines/demo", "", "")
		if !strings.Contains(g.raw, `"breaker":{"failures":1,"within":"1m0s","open_for":"1m0s"}`) {
			t.Fatalf("closed breaker: %s", g.raw)
		}
		m := e.do("GET", "/metrics", "", "")
		for _, want := range []string{`dsat_breaker_state{pipeline="demo",state="closed",step="c"} 1`, `dsat_breaker_transitions_total{pipeline="demo",step="c",to="open"} 0`} {
			if !strings.Contains(m.raw, want) {
				t.Fatalf("metrics lack %s", want)
			}
		}
		if strings.Contains(m.raw, `step="a"`) && strings.Contains(m.raw, `dsat_breaker_state{pipeline="demo",state="closed",step="a"}`) {
			t.Fatalf("a step without a breaker has breaker metrics")
		}
		_, evs, _, cancel := e.stream("/v1/events?pipeline=demo")
		defer cancel()
		ctx := context.Background()
		if opened, err := e.c.BreakerFailed(ctx, "demo", "c", "t"); err != nil || !opened {
			t.Fatalf("open the breaker: %v %v", opened, err)
		}
		g = e.do("GET", "/v1/pipelines/demo", "", "")
		if !strings.Contains(g.raw, `"state":{"state":"open","until":"`) {
			t.Fatalf("open breaker: %s", g.raw)
		}
		select {
		case ev := <-evs:
			if ev.Event != dsat.EventBreaker || !strings.Contains(ev.Data, `"task":"","pipeline":"demo","seq":0,"event":"BREAKER","step":"c"`) ||
				!strings.Contains(ev.Data, `"worker":"t"`) || !strings.Contains(ev.Data, `"detail":{"state":"open","until":"`) {
				t.Fatalf("firehose event %+v, want BREAKER open", ev)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("no BREAKER event on the pipeline's feed")
		}
		// The rest of the cycle (half open, closed) is TestCircuitBreaker's.
		m = e.do("GET", "/metrics", "", "")
		for _, want := range []string{`dsat_breaker_state{pipeline="demo",state="open",step="c"} 1`, `dsat_breaker_state{pipeline="demo",state="closed",step="c"} 0`,
			`dsat_breaker_transitions_total{pipeline="demo",step="c",to="open"} 1`} {
			if !strings.Contains(m.raw, want) {
				t.Fatalf("metrics lack %s", want)
			}
		}
		select {
		case ev := <-evs:
			t.Fatalf("a second event %+v: want one BREAKER per transition", ev)
		case <-time.After(300 * time.Millisecond):
		}
	})
}
