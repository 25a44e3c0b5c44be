package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

func TestSubmitAndGet(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json; charset=utf-8", `{"x":1}`)
		if r.status != 202 || r.header.Get("Location") != "/v1/tasks/"+r.body["id"].(string) || r.body["pipeline"] != "demo" ||
			r.body["status"] != "pending" || r.body["links"].(map[string]any)["events"] == nil {
			t.Fatalf("submit: %d %v %s", r.status, r.header, r.raw)
		}
		id := r.body["id"].(string)
		g := e.do("GET", "/v1/tasks/"+id, "", "")
		if g.status != 200 || g.body["id"] != id || g.body["status"] != "pending" || g.body["version"] != "1.0.0" || g.body["seq"] != 1.0 {
			t.Fatalf("get: %d %s", g.status, g.raw)
		}
		for _, k := range []string{"created_at", "updated_at", "steps", "result", "error", "pipeline"} {
			if _, ok := g.body[k]; !ok {
				t.Errorf("state lacks %q: %s", k, g.raw)
			}
		}
		e.satellite(true)
		deadline := time.Now().Add(10 * time.Second)
		for e.do("GET", "/v1/tasks/"+id, "", "").body["status"] != "succeeded" {
			if time.Now().After(deadline) {
				t.Fatal("task did not succeed")
			}
			time.Sleep(20 * time.Millisecond)
		}
		g = e.do("GET", "/v1/tasks/"+id, "", "")
		if g.body["result"].(map[string]any)["x"] != 1.0 || g.body["steps"].(map[string]any)["b"].(map[string]any)["worker"] != "sat1" {
			t.Fatalf("final state %s", g.raw)
		}
	})
}

func TestSubmitRejectsBadInput(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	before := len(e.mini.Keys())
	for _, tc := range []struct {
		name, path, ctype, body string
		status                  int
		detail                  string
	}{
		{"malformed", "/v1/pipelines/demo/tasks", "application/json", `{"a":`, 400, "not one valid JSON value"},
		{"trailing garbage", "/v1/pipelines/demo/tasks", "application/json", `{} {}`, 400, "unexpected data after the JSON value"},
		{"empty", "/v1/pipelines/demo/tasks", "application/json", ``, 400, "the body is empty"},
		{"wrong type", "/v1/pipelines/demo/tasks", "text/plain", `{}`, 415, "Content-Type: application/json"},
		{"no type", "/v1/pipelines/demo/tasks", "", `{}`, 415, "Content-Type"},
		{"too large", "/v1/pipelines/demo/tasks", "application/json", `"` + strings.Repeat("x", 1<<20) + `"`, 413, "larger than the limit"},
		{"unknown pipeline", "/v1/pipelines/nope/tasks", "application/json", `{}`, 404, "GET /v1/pipelines lists"},
		{"batch not array", "/v1/pipelines/demo/batch", "application/json", `{}`, 400, "JSON array of payloads"},
		{"batch empty", "/v1/pipelines/demo/batch", "application/json", `[]`, 400, "at least one payload"},
		{"batch garbage", "/v1/pipelines/demo/batch", "application/json", `[1] x`, 400, "not one valid JSON value"},
		{"no route", "/v1/nope", "", ``, 404, "no route"},
	} {
		r := e.do("POST", tc.path, tc.ctype, tc.body)
		if r.status != tc.status || r.header.Get("Content-Type") != "application/problem+json" ||
			r.body["status"] != float64(tc.status) || !strings.Contains(r.body["detail"].(string), tc.detail) ||
			!strings.HasPrefix(r.body["type"].(string), problemBase) || r.body["title"] == "" {
			t.Errorf("%s: %d %s", tc.name, r.status, r.raw)
		}
	}
	if after := len(e.mini.Keys()); after != before {
		t.Fatalf("bad input stored keys: %v", e.mini.Keys())
	}
}

func TestIdempotencyKey(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		r1 := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{"n":1}`, "Idempotency-Key", "k1")
		r2 := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{"n":1}`, "Idempotency-Key", "k1")
		r3 := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{"n":2}`, "Idempotency-Key", "k1")
		if r1.status != 202 || r2.status != 200 || r2.body["id"] != r1.body["id"] || r3.status != 409 {
			t.Fatalf("statuses %d %d %d; ids %v %v; %s", r1.status, r2.status, r3.status, r1.body["id"], r2.body["id"], r3.raw)
		}
		long := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{"n":1}`, "Idempotency-Key", strings.Repeat("k", 256))
		if long.status != 400 || long.body["type"] != "https://dsat.dev/problems/invalid-idempotency-key" {
			t.Fatalf("a 256-byte key: %d %s", long.status, long.raw)
		}
	})
}

func TestBatch(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		r := e.do("POST", "/v1/pipelines/demo/batch", "application/json", `[{"i":0},{"i":1},{"i":2}]`)
		if r.status != 202 {
			t.Fatalf("%d %s", r.status, r.raw)
		}
		ids := r.body["ids"].([]any)
		if len(ids) != 3 {
			t.Fatalf("ids %v", ids)
		}
		e.satellite(true)
		for i, id := range ids {
			deadline := time.Now().Add(10 * time.Second)
			for {
				g := e.do("GET", "/v1/tasks/"+id.(string), "", "")
				if g.body["status"] == "succeeded" {
					if g.body["result"].(map[string]any)["i"] != float64(i) {
						t.Fatalf("task %d result %s", i, g.raw)
					}
					break
				}
				if time.Now().After(deadline) {
					t.Fatal("batch task did not finish")
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
	})
}

func TestTaskIDErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	if r := e.do("GET", "/v1/tasks/not-an-id", "", ""); r.status != 400 || !strings.Contains(r.body["detail"].(string), "task ids look like") {
		t.Fatalf("malformed: %d %s", r.status, r.raw)
	}
	unknown := dsat.NewTaskID(dsat.Partition{Pipeline: "demo", API: "1.0"}, time.Now()).String()
	for _, path := range []string{"/v1/tasks/" + unknown, "/v1/tasks/" + unknown + "/events"} {
		if r := e.do("GET", path, "", ""); r.status != 404 {
			t.Fatalf("%s: %d %s", path, r.status, r.raw)
		}
	}
	if r := e.do("POST", "/v1/tasks/"+unknown+"/cancel", "", ""); r.status != 404 {
		t.Fatalf("cancel unknown: %d", r.status)
	}
}

func TestCancelRetryAndDead(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		id := e.submit(`{}`)
		if r := e.do("POST", "/v1/tasks/"+id+"/retry", "", ""); r.status != 409 {
			t.Fatalf("retry of a pending task: %d %s", r.status, r.raw)
		}
		if r := e.do("POST", "/v1/tasks/"+id+"/cancel", "", ""); r.status != 202 || r.body["status"] != "cancelled" {
			t.Fatalf("cancel: %d %s", r.status, r.raw)
		}
		if r := e.do("POST", "/v1/tasks/"+id+"/cancel", "", ""); r.status != 409 || !strings.Contains(r.body["detail"].(string), "only a pending or running task") {
			t.Fatalf("second cancel: %d %s", r.status, r.raw)
		}
		// A task that dies: fail its token by hand, then retry it over HTTP.
		id2 := e.submit(`{}`)
		tid, _ := dsat.ParseTaskID(id2)
		ctx := t.Context()
		msgs, _ := e.rdb.XRange(ctx, e.c.Keys().Step(tid.Partition, "a"), "-", "+").Result()
		env, err := dsat.ParseEnvelope(msgs[len(msgs)-1].Values, 0)
		if err != nil {
			t.Fatal(err)
		}
		d := dsat.Delivery{Envelope: env, EntryID: msgs[len(msgs)-1].ID, Worker: "w"}
		if _, _, err := e.c.Fail(ctx, d, dsat.Failure{Message: "broken", Final: true}); err != nil {
			t.Fatal(err)
		}
		r := e.do("GET", "/v1/dead?pipeline=demo&limit=1", "", "")
		items := r.body["items"].([]any)
		if r.status != 200 || len(items) != 1 || items[0].(map[string]any)["task"] != id2 || items[0].(map[string]any)["reason"] != "broken" {
			t.Fatalf("dead: %d %s", r.status, r.raw)
		}
		for _, k := range []string{"id", "task", "pipeline", "step", "attempts", "reason", "at"} {
			if _, ok := items[0].(map[string]any)[k]; !ok {
				t.Errorf("dead letter lacks %q", k)
			}
		}
		if r := e.do("GET", "/v1/dead", "", ""); r.status != 400 {
			t.Fatalf("dead without pipeline: %d", r.status)
		}
		if r := e.do("GET", "/v1/dead?pipeline=demo&before=$", "", ""); r.status != 400 {
			t.Fatalf("bad cursor: %d", r.status)
		}
		if r := e.do("POST", "/v1/tasks/"+id2+"/retry", "", ""); r.status != 202 || r.body["tokens"] != 1.0 {
			t.Fatalf("retry: %d %s", r.status, r.raw)
		}
		if r := e.do("GET", "/v1/dead?pipeline=demo", "", ""); len(r.body["items"].([]any)) != 0 {
			t.Fatalf("dead letter not removed by retry: %s", r.raw)
		}
	})
}

func TestIntrospectionAndOps(t *testing.T) {
	// Not parallel: its deadlines are short (a loaded machine misses them).
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		e.satellite(true)
		r := e.do("GET", "/v1/pipelines", "", "")
		if r.status != 200 || !strings.Contains(r.raw, `"name":"demo"`) {
			t.Fatalf("pipelines %d %s", r.status, r.raw)
		}
		e.submit(`{}`)
		deadline := time.Now().Add(5 * time.Second)
		for {
			r = e.do("GET", "/v1/pipelines/demo", "", "")
			if strings.Contains(r.raw, `"processed":1`) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("pipeline load never showed processed work: %s", r.raw)
			}
			time.Sleep(50 * time.Millisecond)
		}
		p := r.body["pipeline"].(map[string]any)
		if len(p["edges"].([]any)) != 2 || len(p["steps"].([]any)) != 3 {
			t.Fatalf("pipeline %s", r.raw)
		}
		load := p["steps"].([]any)[0].(map[string]any)["load"].(map[string]any)
		for _, k := range []string{"backlog", "pending", "busy", "processed", "failed"} {
			if _, ok := load[k]; !ok {
				t.Fatalf("load lacks %s: %v", k, load)
			}
		}
		if r := e.do("GET", "/v1/pipelines/nope", "", ""); r.status != 404 {
			t.Fatalf("unknown pipeline %d", r.status)
		}
		s := e.do("GET", "/v1/satellites", "", "")
		if s.status != 200 || !strings.Contains(s.raw, `"id":"sat1"`) || !strings.Contains(s.raw, `"demo/a"`) || !strings.Contains(s.raw, `"last_seen"`) {
			t.Fatalf("satellites %s", s.raw)
		}
		if r := e.do("GET", "/healthz", "", ""); r.status != 200 {
			t.Fatal("healthz")
		}
		if b.Real {
			_ = e.rdb.ScriptFlush(t.Context()).Err()
		}
		if r := e.do("GET", "/readyz", "", ""); r.status != 200 {
			t.Fatalf("readyz %d %s", r.status, r.raw)
		}
		m := e.do("GET", "/metrics", "", "")
		for _, want := range []string{`dsat_http_requests_total{code="200",method="GET",route="/v1/pipelines/{name}"}`, `dsat_submissions_total{pipeline="demo"} 1`, `dsat_step_backlog{pipeline="demo",step="a"}`, "dsat_sse_streams 0"} {
			if !strings.Contains(m.raw, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	})
}

func TestRedisOutageIs503(t *testing.T) {
	t.Parallel()
	// go-redis's default retries (4 tries of 5 dials each, 100 ms apart)
	// take about 2 s per request once Redis is gone; the same retries with
	// millisecond pauses give the same answers at once.
	e := newEnv(t, redistest.Backend{Name: "miniredis", New: func(t testing.TB) (redis.UniversalClient, *miniredis.Miniredis) {
		m := miniredis.RunT(t)
		c := redis.NewClient(&redis.Options{Addr: m.Addr(), DialerRetryTimeout: time.Millisecond,
			MinRetryBackoff: time.Millisecond, MaxRetryBackoff: time.Millisecond})
		t.Cleanup(func() { _ = c.Close() })
		return c, m
	}})
	id := e.submit(`{}`)
	e.mini.Close()
	for _, tc := range []struct{ method, path, body string }{
		{"GET", "/v1/tasks/" + id, ""}, {"POST", "/v1/pipelines/demo/tasks", "{}"}, {"GET", "/readyz", ""}, {"GET", "/v1/satellites", ""},
	} {
		r := e.do(tc.method, tc.path, "application/json", tc.body)
		if r.status != http.StatusServiceUnavailable || r.header.Get("Content-Type") != "application/problem+json" || strings.Contains(r.raw, "goroutine") {
			t.Errorf("%s %s during an outage: %d %s", tc.method, tc.path, r.status, r.raw)
		}
	}
	if r := e.do("GET", "/healthz", "", ""); r.status != 200 {
		t.Fatal("healthz should stay up")
	}
}

func TestAuth(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0], func(c *Config) { c.Tokens = []string{"old", "new"} })
	id := e.submit2(t, "new")
	if r := e.do("GET", "/v1/tasks/"+id, "", ""); r.status != 401 || r.header.Get("WWW-Authenticate") == "" {
		t.Fatalf("no token: %d", r.status)
	}
	if r := e.do("GET", "/v1/tasks/"+id, "", "", "Authorization", "Bearer wrong"); r.status != 401 {
		t.Fatalf("wrong token: %d", r.status)
	}
	if r := e.do("GET", "/v1/tasks/"+id, "", "", "Authorization", "Bearer old"); r.status != 200 {
		t.Fatalf("old token: %d", r.status)
	}
	if r := e.do("GET", "/v1/tasks/"+id+"?access_token=new", "", ""); r.status != 401 {
		t.Fatalf("query token on a non-stream route: %d", r.status)
	}
	res, evs, _, cancel := e.stream("/v1/tasks/" + id + "/events?access_token=new")
	defer cancel()
	if res.StatusCode != 200 {
		t.Fatalf("stream with query token: %d", res.StatusCode)
	}
	if ev := <-evs; ev.Event != "INIT" {
		t.Fatalf("first event %v", ev)
	}
	for _, open := range []string{"/healthz", "/metrics"} {
		if r := e.do("GET", open, "", ""); r.status != 200 {
			t.Fatalf("%s with auth on: %d", open, r.status)
		}
	}
}

func (e *env) submit2(t *testing.T, token string) string {
	r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{}`, "Authorization", "Bearer "+token)
	if r.status != 202 {
		t.Fatalf("submit with token: %d %s", r.status, r.raw)
	}
	return r.body["id"].(string)
}
