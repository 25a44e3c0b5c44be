package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
	"github.com/dsat-dev/dsat/workers"
)

const testYAML = `
name: demo
version: 1.0.0
steps:
  a: {handler: echo, next: [b]}
  b: {handler: hold, next: [c]}
  c: {handler: echo, breaker: {failures: 1, within: 1m, open_for: 1m}, limits: {rate: 100000/s, key: customer, running_per_key: 1000}}
`

// demoClient is a client of the demo pipeline (testYAML) on rdb.
func demoClient(t *testing.T, rdb redis.UniversalClient) *dsat.Client {
	t.Helper()
	p, err := dsat.ParsePipeline("demo.yaml", []byte(testYAML))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// env is an API on a real HTTP server with a satellite behind it.
type env struct {
	t    *testing.T
	rdb  redis.UniversalClient
	mini *miniredis.Miniredis
	c    *dsat.Client
	api  *API
	srv  *httptest.Server
	// openapi checks every exchange with srv against openapi.json.
	openapi *openAPICheck
	// release lets held "hold" handlers finish.
	release chan struct{}
}

type envOpt func(*Config)

func newEnv(t *testing.T, b redistest.Backend, opts ...envOpt) *env {
	t.Helper()
	rdb, mini := b.New(t)
	c := demoClient(t, rdb)
	e := &env{t: t, rdb: rdb, mini: mini, c: c, release: make(chan struct{})}
	cfg := Config{Client: c, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel), Heartbeat: 200 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	e.api = NewRouter(cfg)
	e.openapi = newOpenAPICheck(t, e.api)
	e.srv = httptest.NewServer(e.openapi)
	t.Cleanup(func() { e.api.Close(); e.srv.Close() })
	return e
}

// satellite starts a satellite; "hold" blocks until env.release is closed
// (or passes through when open is true).
func (e *env) satellite(open bool) *workers.Satellite {
	e.t.Helper()
	m := workers.NewMux()
	workers.RegisterBuiltins(m, 0)
	m.HandleFunc("hold", func(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
		if !open {
			select {
			case <-e.release:
			case <-ctx.Done():
				return dsat.Result{}, ctx.Err()
			}
		}
		return dsat.Result{Output: t.Payload}, nil
	})
	s, err := workers.New(e.c, m, workers.Config{ID: "sat1", Block: 100 * time.Millisecond, PromoteInterval: 50 * time.Millisecond,
		HeartbeatInterval: 100 * time.Millisecond, ScaleInterval: 100 * time.Millisecond, WatchInterval: 50 * time.Millisecond})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := s.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

type resp struct {
	status int
	header http.Header
	body   map[string]any
	raw    string
}

func (e *env) do(method, path, ctype, body string, hdr ...string) resp {
	e.t.Helper()
	req, _ := http.NewRequest(method, e.srv.URL+path, strings.NewReader(body))
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

// doHost sends a GET with the given Host header.
func (e *env) doHost(host, path string, hdr ...string) resp {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	req.Host = host
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	r := resp{status: res.StatusCode, header: res.Header, raw: string(b)}
	_ = json.Unmarshal(b, &r.body)
	return r
}

func (e *env) submit(payload string) string {
	e.t.Helper()
	r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", payload)
	if r.status != http.StatusAccepted {
		e.t.Fatalf("submit: %d %s", r.status, r.raw)
	}
	return r.body["id"].(string)
}

// sseEvent is one parsed server-sent event.
type sseEvent struct {
	ID, Event, Data string
}

// stream opens an SSE request and returns a channel of events and of
// comments; both close when the response ends.
func (e *env) stream(path string, hdr ...string) (*http.Response, <-chan sseEvent, <-chan string, context.CancelFunc) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	evs := make(chan sseEvent, 1000)
	comments := make(chan string, 1000)
	go func() {
		defer close(evs)
		defer close(comments)
		defer res.Body.Close()
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 4096), 1<<22)
		var cur sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if cur.Event != "" || cur.Data != "" {
					evs <- cur
				}
				cur = sseEvent{}
			case strings.HasPrefix(line, ":"):
				comments <- line
			case strings.HasPrefix(line, "id: "):
				cur.ID = line[4:]
			case strings.HasPrefix(line, "event: "):
				cur.Event = line[7:]
			case strings.HasPrefix(line, "data: "):
				if cur.Data != "" {
					cur.Data += "\n"
				}
				cur.Data += line[6:]
			default:
				cur.Event = "UNPARSED:" + line
			}
		}
	}()
	return res, evs, comments, cancel
}

// collect reads events until the channel closes or limit passes.
func collect(t *testing.T, evs <-chan sseEvent, limit time.Duration) []sseEvent {
	t.Helper()
	var out []sseEvent
	timer := time.NewTimer(limit)
	defer timer.Stop()
	for {
		select {
		case ev, ok := <-evs:
			if !ok {
				return out
			}
			out = append(out, ev)
		case <-timer.C:
			t.Fatalf("stream did not end within %s; got %d events", limit, len(out))
		}
	}
}

func names(evs []sseEvent) string {
	var n []string
	for _, e := range evs {
		n = append(n, e.Event)
	}
	return strings.Join(n, ",")
}
