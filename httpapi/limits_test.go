package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestMetricsMethodLabelIsBounded: made-up HTTP methods all count as
// "other"; the raw method never becomes a label value.
func TestMetricsMethodLabelIsBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	for i := 0; i < 20; i++ {
		e.do(fmt.Sprintf("MADEUP%dXX", i), "/v1/pipelines", "", "")
	}
	e.do("BREW", "/nowhere", "", "")
	m := e.do("GET", "/metrics", "", "")
	if m.status != 200 || strings.Contains(m.raw, "MADEUP") || strings.Contains(m.raw, "BREW") {
		t.Fatalf("a client's method became a label:\n%s", grepLines(m.raw, "dsat_http_requests_total"))
	}
	if !strings.Contains(m.raw, `dsat_http_requests_total{code="405",method="other",route="unmatched"} 21`) {
		t.Fatalf("made-up methods not counted as other:\n%s\n%s", grepLines(m.raw, "dsat_http_requests_total"), m.raw[:min(len(m.raw), 300)])
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestBatchBodyCapInBytes: the default cap (16 MiB) applies whatever the
// number of items.
func TestBatchBodyCapInBytes(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	item := `"` + strings.Repeat("x", 20<<10) + `"`
	body := "[" + strings.TrimSuffix(strings.Repeat(item+",", 850), ",") + "]" // 850 items, 17 MiB
	before := len(e.mini.Keys())
	r := e.do("POST", "/v1/pipelines/demo/batch", "application/json", body)
	if r.status != 413 || !strings.Contains(r.raw, "batch body is larger than the limit of 16777216 bytes") {
		t.Fatalf("17 MiB batch: %d %.300s", r.status, r.raw)
	}
	if len(e.mini.Keys()) != before {
		t.Fatal("a refused batch stored keys")
	}
}

// endless is a request body that never ends: "[" then items forever. It
// counts the bytes read.
type endless struct {
	n     atomic.Int64
	first bool
}

func (b *endless) Read(p []byte) (int, error) {
	const item = `{"a":1},`
	i := 0
	if !b.first {
		b.first, p[0], i = true, '[', 1
	}
	for ; i+len(item) <= len(p); i += len(item) {
		copy(p[i:], item)
	}
	b.n.Add(int64(i))
	return i, nil
}

// TestBatchIsDecodedAsAStream: a batch is refused at the first item past a
// limit, having read only that far (the body here never ends).
func TestBatchIsDecodedAsAStream(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	body := &endless{}
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/pipelines/demo/batch", body)
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 413 || !strings.Contains(string(b), "send at most 1000 per batch") {
		t.Fatalf("%d %s", res.StatusCode, b)
	}
	// What was sent includes what the connection buffered and the server
	// drained after answering; reading the whole body would be 16 MiB.
	if n := body.n.Load(); n > 8<<20 {
		t.Fatalf("%d bytes were sent before a refusal of 1001 items of 8 bytes", n)
	}
}

// TestBatchDecodesAreBounded: with one decode slot held by a slow body,
// another batch waits and gets a 503 at the request timeout.
func TestBatchDecodesAreBounded(t *testing.T) {
	// Not parallel: its deadlines are short (a loaded machine misses them).
	e := newEnv(t, redistest.Backends()[0], func(c *Config) {
		c.MaxBatchDecodes = 1
		c.RequestTimeout = 300 * time.Millisecond
	})
	pr, pw := io.Pipe()
	go func() { _, _ = io.WriteString(pw, `[{"slow":1},`) }()
	done := make(chan struct{})
	go func() {
		defer close(done)
		req, _ := http.NewRequest("POST", e.srv.URL+"/v1/pipelines/demo/batch", pr)
		req.Header.Set("Content-Type", "application/json")
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
		}
	}()
	time.Sleep(100 * time.Millisecond) // the slow batch holds the slot
	r := e.do("POST", "/v1/pipelines/demo/batch", "application/json", `[{"a":1}]`)
	pw.Close()
	<-done
	if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.raw, "too many batches") {
		t.Fatalf("second batch while the slot is held: %d %s", r.status, r.raw)
	}
	if r := e.do("POST", "/v1/pipelines/demo/batch", "application/json", `[{"a":1}]`); r.status != 202 {
		t.Fatalf("after the slot is free: %d %s", r.status, r.raw)
	}
}

// TestBodyBytesAreBounded: the submission and schedule bodies being read
// at once hold at most MaxBodyBytes; a body that finds no room for its
// first reservation waits and gets a 503 at the request timeout (review 8: 400 clients sending 1 MiB
// bodies slowly held 480 MB of dsat serve), and a body announcing more
// than the payload limit is a 413 before it is read.
func TestBodyBytesAreBounded(t *testing.T) {
	// Not parallel: its deadlines are short (a loaded machine misses them).
	e := newEnv(t, redistest.Backends()[0], func(c *Config) {
		c.MaxBodyBytes = 3000
		c.RequestTimeout = 300 * time.Millisecond
	})
	slow := func(path, method string) (*io.PipeWriter, chan struct{}) {
		pr, pw := io.Pipe()
		go func() { _, _ = io.WriteString(pw, `{"slow":"`) }()
		done := make(chan struct{})
		go func() {
			defer close(done)
			req, _ := http.NewRequest(method, e.srv.URL+path, pr)
			req.ContentLength = 2000
			req.Header.Set("Content-Type", "application/json")
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}()
		time.Sleep(100 * time.Millisecond) // the slow body holds 2000 bytes of the budget
		return pw, done
	}
	for _, path := range []string{"/v1/pipelines/demo/tasks", "/v1/schedules/s"} {
		method := "POST"
		if path == "/v1/schedules/s" {
			method = "PUT"
		}
		pw, done := slow(path, method)
		r := e.do(method, path, "application/json", `{"pipeline":"demo","every":"1m"}`)
		pw.Close()
		<-done
		if r.status != 503 || r.header.Get("Retry-After") == "" || !strings.Contains(r.raw, "too many request bodies") {
			t.Fatalf("%s %s while the budget is held: %d %s", method, path, r.status, r.raw)
		}
		if r := e.do(method, path, "application/json", `{"pipeline":"demo","every":"1m"}`); r.status/100 != 2 {
			t.Fatalf("%s %s after the budget is free: %d %s", method, path, r.status, r.raw)
		}
	}
	// Announced past the limit: refused before the body is read.
	req, _ := http.NewRequest("POST", e.srv.URL+"/v1/pipelines/demo/tasks", strings.NewReader(`{}`))
	req.ContentLength = 2 << 20
	req.Header.Set("Content-Type", "application/json")
	if res, err := http.DefaultClient.Do(req); err == nil {
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 413 || !strings.Contains(string(b), "larger than the limit") {
			t.Fatalf("a Content-Length past the limit: %d %s", res.StatusCode, b)
		}
	}
}

// TestSlowBodyHoldsWhatItSent: clients that announce 1 MiB bodies and
// send 100 bytes hold bodyFirstReserve of the budget each, not what they
// announced, so a submission beside them is read at once; a body then
// reserves the rest as it arrives, and one alone may hold the whole
// budget (a 1 MiB payload with a 256 KiB budget is accepted).
func TestSlowBodyHoldsWhatItSent(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0], func(c *Config) {
		c.MaxBodyBytes = 256 << 10
		c.RequestTimeout = 5 * time.Second
	})
	var done []chan struct{}
	var pipes []*io.PipeWriter
	t.Cleanup(func() { // before the server closes: it waits for the slow bodies
		for _, pw := range pipes {
			pw.CloseWithError(io.ErrUnexpectedEOF)
		}
	})
	for range 3 {
		pr, pw := io.Pipe()
		pipes = append(pipes, pw)
		go func() { _, _ = io.WriteString(pw, `{"slow":"`+strings.Repeat("x", 90)) }()
		d := make(chan struct{})
		done = append(done, d)
		go func() {
			defer close(d)
			req, _ := http.NewRequest("POST", e.srv.URL+"/v1/pipelines/demo/tasks", pr)
			req.ContentLength = 1 << 20
			req.Header.Set("Content-Type", "application/json")
			if res, err := http.DefaultClient.Do(req); err == nil {
				res.Body.Close()
			}
		}()
	}
	time.Sleep(200 * time.Millisecond) // the slow bodies have begun
	start := time.Now()
	r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{"n":"`+strings.Repeat("y", 20<<10)+`"}`)
	if r.status != 202 || time.Since(start) > 2*time.Second {
		t.Fatalf("a 20 KiB submission beside 3 slow 1 MiB bodies: %d after %s: %s", r.status, time.Since(start), r.raw)
	}
	for i, pw := range pipes {
		pw.Close()
		<-done[i]
	}
	big := `{"n":"` + strings.Repeat("z", (1<<20)-16) + `"}`
	if r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", big); r.status != 202 {
		t.Fatalf("a %d-byte body alone with a 256 KiB budget: %d %s", len(big), r.status, r.raw)
	}
}

// TestRefusedPayloads: invalid UTF-8 and JSON nested deeper than MaxDepth
// are 400s at submit, single and batch; an Idempotency-Key on /batch is a
// 400 that says what to do instead.
func TestRefusedPayloads(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	before := len(e.mini.Keys())
	for _, tc := range []struct {
		name, path, body string
		hdr              []string
		detail           string
	}{
		{"bad utf-8", "/v1/pipelines/demo/tasks", "{\"a\":\"caf\xe9\"}", nil, "not valid UTF-8 (first bad byte at offset 9)"},
		{"bad utf-8 key", "/v1/pipelines/demo/tasks", "{\"\xff\":1}", nil, "not valid UTF-8"},
		{"batch bad utf-8", "/v1/pipelines/demo/batch", "[{\"a\":1},{\"a\":\"\xc3\"}]", nil, "item 1: the JSON is not valid UTF-8"},
		{"too deep", "/v1/pipelines/demo/tasks", nest(MaxDepth + 1), nil, "nests 513 levels deep; at most 512"},
		{"too deep in an object", "/v1/pipelines/demo/tasks", strings.Repeat(`{"a":`, 600) + "1" + strings.Repeat("}", 600), nil, "at most 512"},
		{"batch too deep", "/v1/pipelines/demo/batch", "[" + nest(MaxDepth+1) + "]", nil, "item 0: the JSON nests 513 levels deep"},
		{"batch idempotency key", "/v1/pipelines/demo/batch", `[{}]`, []string{"Idempotency-Key", "k"}, "Idempotency-Key is not supported on /batch"},
		{"batch unclosed", "/v1/pipelines/demo/batch", `[{}`, nil, "close it with ]"},
		{"batch bad item", "/v1/pipelines/demo/batch", `[{} {}]`, nil, "item 1 is not valid JSON"},
		{"traceparent too long", "/v1/pipelines/demo/tasks", `{}`, []string{"Traceparent", strings.Repeat("f", 129)}, "header Traceparent: dsat: invalid traceparent: 129 bytes"},
		{"traceparent malformed", "/v1/pipelines/demo/tasks", `{}`, []string{"Traceparent", "00-abc"}, "send a W3C traceparent or no header"},
		{"traceparent zero trace id", "/v1/pipelines/demo/tasks", `{}`, []string{"Traceparent", "00-00000000000000000000000000000000-00f067aa0ba902b7-01"}, "all zeros"},
	} {
		r := e.do("POST", tc.path, "application/json", tc.body, tc.hdr...)
		if r.status != 400 || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(r.raw, tc.detail) {
			t.Errorf("%s: %d %s", tc.name, r.status, r.raw)
		}
	}
	if len(e.mini.Keys()) != before {
		t.Fatalf("refused payloads stored keys: %v", e.mini.Keys())
	}
	// Exactly MaxDepth levels, and brackets inside strings, are fine.
	for _, ok := range []string{nest(MaxDepth), `{"s":"` + strings.Repeat("[{", 1000) + `\"\\"}`, `"été ✓"`} {
		if r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", ok); r.status != 202 {
			t.Errorf("%.40s: %d %s", ok, r.status, r.raw)
		}
	}
	if r := e.do("POST", "/v1/pipelines/demo/batch", "application/json", "["+nest(MaxDepth)+",\"été\"]"); r.status != 202 {
		t.Errorf("batch at the limit: %d %s", r.status, r.raw)
	}
}

// TestDelayedSubmission: ?delay= and ?at= schedule a task (202, status
// scheduled, run_at in its state); malformed or too distant times are a
// 400 that says what to send; a past ?at= runs at once.
func TestDelayedSubmission(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	r := e.do("POST", "/v1/pipelines/demo/tasks?delay=30s", "application/json", `{}`)
	if r.status != 202 || r.body["status"] != "scheduled" {
		t.Fatalf("delay 30s: %d %s", r.status, r.raw)
	}
	g := e.do("GET", "/v1/tasks/"+r.body["id"].(string), "", "")
	if g.body["status"] != "scheduled" || g.body["run_at"] == nil {
		t.Fatalf("state of a delayed task: %s", g.raw)
	}
	b := e.do("POST", "/v1/pipelines/demo/batch?at="+time.Now().Add(time.Hour).UTC().Format(time.RFC3339), "application/json", `[{},{}]`)
	if b.status != 202 {
		t.Fatalf("delayed batch: %d %s", b.status, b.raw)
	}
	for _, id := range b.body["ids"].([]any) {
		if g := e.do("GET", "/v1/tasks/"+id.(string), "", ""); g.body["status"] != "scheduled" {
			t.Fatalf("batch task %s: %s", id, g.raw)
		}
	}
	if r := e.do("POST", "/v1/pipelines/demo/tasks?at=2020-01-01T00:00:00Z", "application/json", `{}`); r.status != 202 || r.body["status"] != "pending" {
		t.Fatalf("past at: %d %s", r.status, r.raw)
	}
	for _, q := range []string{"delay=soon", "delay=-5s", "delay=9000h", "at=tomorrow", "delay=1s&at=2030-01-01T00:00:00Z",
		"at=" + time.Now().Add(2*dsat.MaxDelay).UTC().Format(time.RFC3339)} {
		r := e.do("POST", "/v1/pipelines/demo/tasks?"+q, "application/json", `{}`)
		if r.status != 400 || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(r.raw, "invalid delay") {
			t.Errorf("?%s: %d %s", q, r.status, r.raw)
		}
	}
}

// TestDeadlineParameter: ?deadline= (a duration or an RFC 3339 time) gives
// a task, or every task of a batch, a deadline shown in its state; bad
// deadlines are a 400 that says what to send.
func TestDeadlineParameter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	r := e.do("POST", "/v1/pipelines/demo/tasks?deadline=10m", "application/json", `{}`)
	if r.status != 202 {
		t.Fatalf("deadline 10m: %d %s", r.status, r.raw)
	}
	g := e.do("GET", "/v1/tasks/"+r.body["id"].(string), "", "")
	dl, err := time.Parse(time.RFC3339Nano, fmt.Sprint(g.body["deadline"]))
	if err != nil || dl.Before(time.Now().Add(9*time.Minute)) || dl.After(time.Now().Add(11*time.Minute)) {
		t.Fatalf("state of a task with a deadline: %s", g.raw)
	}
	at := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	b := e.do("POST", "/v1/pipelines/demo/batch?delay=1m&deadline="+at, "application/json", `[{},{}]`)
	if b.status != 202 {
		t.Fatalf("batch with a deadline: %d %s", b.status, b.raw)
	}
	for _, id := range b.body["ids"].([]any) {
		if g := e.do("GET", "/v1/tasks/"+id.(string), "", ""); g.body["deadline"] == nil || g.body["status"] != "scheduled" {
			t.Fatalf("batch task %s: %s", id, g.raw)
		}
	}
	for _, q := range []string{"deadline=soon", "deadline=-5s", "deadline=0s", "deadline=9000h", "deadline=2020-01-01T00:00:00Z",
		"delay=1h&deadline=10m"} {
		r := e.do("POST", "/v1/pipelines/demo/tasks?"+q, "application/json", `{}`)
		if r.status != 400 || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(r.raw, "invalid deadline") {
			t.Errorf("?%s: %d %s", q, r.status, r.raw)
		}
	}
}

// TestSubmitRefusesUnknownParameters: a misspelt, empty or repeated query
// parameter is a 400 that names it, not silently ignored.
func TestSubmitRefusesUnknownParameters(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	for _, q := range []string{"dealine=10m", "deadline=", "deadline=5s&deadline=6s", "delay="} {
		for _, route := range []string{"tasks", "batch"} {
			body := `{}`
			if route == "batch" {
				body = `[{}]`
			}
			r := e.do("POST", "/v1/pipelines/demo/"+route+"?"+q, "application/json", body)
			if r.status != 400 || !strings.Contains(r.raw, "unknown-parameter") || !strings.Contains(r.raw, "query parameter") {
				t.Errorf("%s?%s: %d %s", route, q, r.status, r.raw)
			}
		}
	}
}

// TestPriorityParameter (issue 16): ?priority= gives a task, or every task
// of a batch, its priority, shown in its state (normal by default); any
// other value is a 400 invalid-priority.
func TestPriorityParameter(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{}`)
	if g := e.do("GET", "/v1/tasks/"+r.body["id"].(string), "", ""); g.body["priority"] != "normal" {
		t.Fatalf("default priority: %s", g.raw)
	}
	r = e.do("POST", "/v1/pipelines/demo/tasks?priority=high", "application/json", `{}`)
	if r.status != 202 {
		t.Fatalf("priority high: %d %s", r.status, r.raw)
	}
	if g := e.do("GET", "/v1/tasks/"+r.body["id"].(string), "", ""); g.body["priority"] != "high" {
		t.Fatalf("state of a high task: %s", g.raw)
	}
	b := e.do("POST", "/v1/pipelines/demo/batch?priority=low", "application/json", `[{},{}]`)
	if b.status != 202 {
		t.Fatalf("batch low: %d %s", b.status, b.raw)
	}
	for _, id := range b.body["ids"].([]any) {
		if g := e.do("GET", "/v1/tasks/"+id.(string), "", ""); g.body["priority"] != "low" {
			t.Fatalf("batch task %s: %s", id, g.raw)
		}
	}
	for _, route := range []string{"tasks", "batch"} {
		for _, q := range []string{"priority=urgent", "priority=HIGH", "priority=1"} {
			body := `{}`
			if route == "batch" {
				body = `[{}]`
			}
			r := e.do("POST", "/v1/pipelines/demo/"+route+"?"+q, "application/json", body)
			if r.status != 400 || r.header.Get("Content-Type") != "application/problem+json" || !strings.Contains(r.raw, "invalid-priority") {
				t.Errorf("%s?%s: %d %s", route, q, r.status, r.raw)
			}
		}
	}
}
