package httpapi

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"sync"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestConcurrencyIsLowerCase: a step's concurrency is served with
// lower-case fields like every other field, {"min":1,"max":64} (it was
// {"Min":1,"Max":64}; issue 14).
func TestConcurrencyIsLowerCase(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	for _, path := range []string{"/v1/pipelines", "/v1/pipelines/demo"} {
		r := e.do("GET", path, "", "")
		if r.status != 200 || !strings.Contains(r.raw, `"concurrency":{"min":1,"max":64}`) || strings.Contains(r.raw, `"Min"`) {
			t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
		}
	}
}

// TestPollsLogAtDebug: successful reads of the routes the dashboard polls
// are logged at debug level; writes and errors at info (dsat dev logged
// every dashboard poll at info; issue 14).
func TestPollsLogAtDebug(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	var mu sync.Mutex
	e := newEnv(t, redistest.Backends()[0], func(c *Config) {
		c.Logger = zerolog.New(zerolog.SyncWriter(&lockedWriter{&mu, &buf})).Level(zerolog.DebugLevel)
	})
	id := e.submit(`{}`)
	for _, path := range []string{"/v1/pipelines", "/v1/pipelines/demo", "/v1/tasks/" + id, "/v1/dead?pipeline=demo", "/v1/satellites", "/healthz", "/v1/pipelines/nope"} {
		e.do("GET", path, "", "")
	}
	levels := map[string]string{}
	mu.Lock()
	for _, line := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		var l struct{ Level, Message, Method, Route string }
		if json.Unmarshal([]byte(line), &l) == nil && l.Message == "request" {
			levels[l.Method+" "+l.Route] = l.Level
		}
	}
	mu.Unlock()
	for req, want := range map[string]string{
		"GET /v1/pipelines": "debug", "GET /v1/pipelines/{name}": "info" /* the 404 came last */, "GET /v1/tasks/{id}": "debug",
		"GET /v1/dead": "debug", "GET /v1/satellites": "debug", "GET /healthz": "debug", "POST /v1/pipelines/{name}/tasks": "info",
	} {
		if levels[req] != want {
			t.Errorf("%s logged at %q, want %s (all: %v)", req, levels[req], want, levels)
		}
	}
	if !polled("GET", "/v1/pipelines/{name}", 200) || polled("GET", "/v1/tasks/{id}/events", 200) || polled("POST", "/v1/tasks/{id}/cancel", 202) {
		t.Fatal("polled")
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
