//go:build integration

package httpapi

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// The tests that need the OpenAPI validator (kin-openapi, with its YAML
// and JSON-schema libraries, a good part of the fast suite's cold build):
// in the full suite, with openapi_check_test.go, which checks every
// exchange of every httpapi test against openapi.json. The fast suite
// keeps TestOpenAPIMatchesRouter (routes against the document, with
// encoding/json).

// TestOpenAPIDocument: openapi.json is a valid OpenAPI 3.1 document, served
// as is at /openapi.json, open without a token like /healthz.
func TestOpenAPIDocument(t *testing.T) {
	t.Parallel()
	doc, err := parseOpenAPI()
	if err != nil {
		t.Fatalf("httpapi/openapi.json is not a valid OpenAPI document: %v", err)
	}
	if !doc.IsOpenAPI31OrLater() || doc.IsOpenAPI32OrLater() {
		t.Fatalf("httpapi/openapi.json is OpenAPI %s, want 3.1.x", doc.OpenAPI)
	}
	e := newEnv(t, redistest.Backends()[0], func(c *Config) { c.Tokens, c.MetricsAuth = []string{"s3cret"}, true })
	r := e.do("GET", "/openapi.json", "", "")
	if r.status != 200 || r.header.Get("Content-Type") != "application/json" || r.raw != string(openAPIDoc) {
		t.Fatalf("GET /openapi.json without a token: %d %q %.100s", r.status, r.header.Get("Content-Type"), r.raw)
	}
	// The document says which routes are public; the server agrees.
	for _, op := range documentedOperations(doc) {
		method, path, _ := strings.Cut(op, " ")
		if method != "GET" || strings.Contains(path, "{") {
			continue
		}
		public := doc.Paths.Value(path).GetOperation(method).Security
		got := e.do(method, path, "", "").status
		if open := public != nil && len(*public) == 0; open == (got == http.StatusUnauthorized) {
			t.Errorf("%s: security %v in httpapi/openapi.json, but without a token it answered %d", op, public, got)
		}
	}
}

// TestOpenAPIResponses drives every documented operation to a success
// and the common problems, so that each gets its real response validated
// (newEnv's openAPICheck does the checking), then requires that every
// documented operation had a 2xx checked.
func TestOpenAPIResponses(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	ok := func(r resp, want int, what string) resp {
		t.Helper()
		if r.status != want {
			t.Fatalf("%s: %d, want %d: %s", what, r.status, want, r.raw)
		}
		return r
	}
	// Submit: plain, idempotent (replayed, conflicting), delayed, traced.
	id := ok(e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{"n":1}`, "Idempotency-Key", "k"), 202, "submit").body["id"].(string)
	ok(e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{"n":1}`, "Idempotency-Key", "k"), 200, "replayed submit")
	ok(e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{"n":2}`, "Idempotency-Key", "k"), 409, "conflicting submit")
	later := ok(e.do("POST", "/v1/pipelines/demo/tasks?delay=1h", "application/json", `{}`,
		"Traceparent", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"), 202, "delayed submit").body["id"].(string)
	ok(e.do("POST", "/v1/pipelines/demo/tasks?at="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "application/json", `[1]`), 202, "submit at")
	ok(e.do("POST", "/v1/pipelines/demo/batch?delay=1h", "application/json", `[{"i":0},"x",null]`), 202, "batch")
	ok(e.do("GET", "/v1/tasks/"+later, "", ""), 200, "scheduled task")
	ok(e.do("POST", "/v1/pipelines/demo/pause?step=b", "", ""), 200, "pause a step")
	ok(e.do("POST", "/v1/pipelines/demo/pause", "", ""), 200, "pause")
	ok(e.do("GET", "/v1/pipelines/demo", "", ""), 200, "paused pipeline")
	ok(e.do("POST", "/v1/pipelines/demo/resume", "", ""), 200, "resume")
	ok(e.do("POST", "/v1/pipelines/demo/resume?step=b", "", ""), 200, "resume a step")
	ok(e.do("POST", "/v1/pipelines/demo/pause?step=nope", "", ""), 404, "pause an unknown step")
	ok(e.do("POST", "/v1/tasks/"+later+"/cancel?reason=test", "", ""), 202, "cancel")

	// A task that dies at a, is listed in the dead letters and retried.
	dead := e.submit(`{"dies":true}`)
	failToken(t, e, dead, "a")
	page := ok(e.do("GET", "/v1/dead?pipeline=demo&limit=10", "", ""), 200, "dead letters")
	if len(page.body["items"].([]any)) != 1 {
		t.Fatalf("dead letters: %s", page.raw)
	}
	ok(e.do("POST", "/v1/tasks/"+dead+"/retry", "", ""), 202, "retry")
	// Task search and bulk actions.
	ok(e.do("GET", "/v1/tasks?pipeline=demo&limit=2", "", ""), 200, "search")
	ok(e.do("GET", "/v1/tasks?status=scheduled,failed&since=2020-01-01T00:00:00Z", "", ""), 200, "search by status")
	ok(e.do("GET", "/v1/tasks?status=done", "", ""), 400, "search by an unknown status")
	ok(e.do("POST", "/v1/pipelines/demo/retry-failed", "", ""), 200, "retry the failed tasks")
	ok(e.do("POST", "/v1/pipelines/demo/dead/retry", "", ""), 200, "retry the dead letters' tasks")
	ok(e.do("POST", "/v1/pipelines/demo/cancel?status=scheduled&reason=test", "", ""), 200, "cancel the scheduled tasks")

	// A satellite runs the tasks; the firehose, the feeds and the state follow.
	_, firehose, _, stop := e.stream("/v1/events?pipeline=demo")
	e.satellite(true)
	waitStatus(t, e, id, dsat.StatusSucceeded)
	waitStatus(t, e, dead, dsat.StatusSucceeded)
	select {
	case <-firehose:
	case <-time.After(5 * time.Second):
		t.Fatal("no firehose event")
	}
	stop()
	_, evs, _, stop := e.stream("/v1/tasks/" + id + "/events")
	collect(t, evs, 5*time.Second)
	stop()
	_, evs, _, stop = e.stream("/v1/tasks/"+id+"/events", "Last-Event-ID", "1764201600123-0") // an old feed's id: reset, then every event
	if got := collect(t, evs, 5*time.Second); len(got) == 0 || got[0].Event != "reset" {
		t.Fatalf("resume with an old id: %v", names(got))
	}
	stop()

	ok(e.do("GET", "/v1/pipelines", "", ""), 200, "pipelines")
	ok(e.do("GET", "/v1/pipelines/demo", "", ""), 200, "pipeline")
	ok(e.do("GET", "/v1/pipelines/demo/stats?window=1m", "", ""), 200, "stats")
	ok(e.do("GET", "/v1/satellites", "", ""), 200, "satellites")
	// Schedules: created, replaced, listed, paused, resumed, deleted.
	ok(e.do("PUT", "/v1/schedules/nightly", "application/json", `{"pipeline": "demo", "cron": "0 3 * * *", "timezone": "Europe/Paris", "jitter": "1m"}`), 201, "create a schedule")
	ok(e.do("PUT", "/v1/schedules/nightly", "application/json", `{"pipeline": "demo", "every": "1h", "payload": [1]}`), 200, "replace a schedule")
	ok(e.do("GET", "/v1/schedules", "", ""), 200, "schedules")
	ok(e.do("POST", "/v1/schedules/nightly/pause", "", ""), 200, "pause a schedule")
	ok(e.do("POST", "/v1/schedules/nightly/resume", "", ""), 200, "resume a schedule")
	ok(e.do("GET", "/v1/schedules/nightly", "", ""), 200, "schedule")
	ok(e.do("DELETE", "/v1/schedules/nightly", "", ""), 204, "delete a schedule")
	ok(e.do("GET", "/v1/schedules/nightly", "", ""), 404, "deleted schedule")
	ok(e.do("GET", "/healthz", "", ""), 200, "healthz")
	ok(e.do("GET", "/readyz", "", ""), 200, "readyz")
	ok(e.do("GET", "/metrics", "", "", "Accept-Encoding", "identity"), 200, "metrics")
	ok(e.do("GET", "/openapi.json", "", ""), 200, "openapi.json")

	// Problems.
	ok(e.do("GET", "/v1/tasks/not-an-id", "", ""), 400, "malformed id")
	ok(e.do("GET", "/v1/tasks/"+dsat.NewTaskID(dsat.Partition{Pipeline: "demo", API: "1.0"}, time.Now()).String(), "", ""), 404, "unknown task")
	ok(e.do("POST", "/v1/pipelines/nope/tasks", "application/json", `{}`), 404, "unknown pipeline")
	ok(e.do("POST", "/v1/pipelines/demo/tasks", "text/plain", `{}`), 415, "not JSON")
	ok(e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `"`+strings.Repeat("x", 1<<20)+`"`), 413, "too large")
	ok(e.do("POST", "/v1/tasks/"+id+"/cancel", "", ""), 409, "cancel a finished task")
	ok(e.do("GET", "/v1/events", "", ""), 400, "firehose without a pipeline")
	ok(e.do("GET", "/v1/pipelines/demo/stats?window=1h", "", ""), 400, "a stats window over 15m")
	ok(e.do("DELETE", "/v1/tasks/"+id, "", ""), 405, "a method no route has")
	ok(e.do("GET", "/v1/nowhere", "", ""), 404, "no route")

	e.api.Close() // ends the streams; srv.Close waits for their checks
	e.srv.Close()
	for _, op := range e.openapi.unchecked() {
		t.Errorf("%s: no 2xx response in TestOpenAPIResponses passed validation against httpapi/openapi.json; add a request for it (or see the errors above)", op)
	}
}

func waitStatus(t *testing.T, e *env, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := e.do("GET", "/v1/tasks/"+id, "", "")
		if r.body["status"] == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("task %s: %s, want %s", id, fmt.Sprint(r.body["status"]), want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
