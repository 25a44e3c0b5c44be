package httpapi

import (
	"encoding/json"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/go-chi/chi/v5"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestOpenAPIMatchesRouter: every route the router serves is documented
// with the same method and path, and every documented operation is served.
func TestOpenAPIMatchesRouter(t *testing.T) {
	t.Parallel()
	documented := openAPIOperations(t)
	// Every optional route on: the dashboard, auth, /metrics behind auth.
	e := newEnv(t, redistest.Backends()[0], func(c *Config) {
		c.Static, c.Tokens, c.MetricsAuth = http.NotFoundHandler(), []string{"t"}, true
	})
	served := routerOperations(t, e.api.router)
	for _, op := range served {
		if !slices.Contains(documented, op) {
			method, path, _ := strings.Cut(op, " ")
			t.Errorf("%s is served by the router but not documented in httpapi/openapi.json: add %q under paths[%q] (parameters, responses)",
				op, strings.ToLower(method), path)
		}
	}
	for _, op := range documented {
		if !slices.Contains(served, op) {
			t.Errorf("%s is documented in httpapi/openapi.json but the router has no such route: fix its path or method, or remove it", op)
		}
	}
}

// openAPIOperations lists "METHOD /path" for every operation in
// openapi.json, read with encoding/json (the fast suite does not compile
// the OpenAPI validator; TestOpenAPIDocument validates the document in
// the full suite).
func openAPIOperations(t *testing.T) []string {
	t.Helper()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDoc, &doc); err != nil {
		t.Fatalf("httpapi/openapi.json: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1.") {
		t.Fatalf("httpapi/openapi.json is OpenAPI %q, want 3.1.x", doc.OpenAPI)
	}
	var out []string
	for path, item := range doc.Paths {
		for method := range item {
			switch method {
			case "get", "put", "post", "delete", "options", "head", "patch", "trace":
				out = append(out, strings.ToUpper(method)+" "+path)
			}
		}
	}
	slices.Sort(out)
	return out
}

// dashboardRoute is the dashboard's catch-all: HTML, script and style
// files for a browser, served at / when Config.Static is set. It is not
// API, and OpenAPI has no path template for "anything below /", so the
// document leaves it out (and says so in info.description).
const dashboardRoute = "/*"

// routerOperations lists "METHOD /path" for every route of r, with chi's
// regexp parameters ({id:[0-9]+}) written as OpenAPI templates ({id}).
func routerOperations(t *testing.T, r chi.Routes) []string {
	t.Helper()
	re := regexp.MustCompile(`\{([^}:]+):[^}]*\}`)
	var out []string
	err := chi.Walk(r, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if route != dashboardRoute {
			out = append(out, method+" "+re.ReplaceAllString(route, "{$1}"))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// failToken fails the task's token waiting at step for good, as a worker
// whose handler gives up would.
func failToken(t *testing.T, e *env, task, step string) {
	t.Helper()
	tid, _ := dsat.ParseTaskID(task)
	msgs, err := e.rdb.XRange(t.Context(), e.c.Keys().Step(tid.Partition, step), "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		env, err := dsat.ParseEnvelope(m.Values, 0)
		if err != nil || env.Task != task {
			continue
		}
		d := dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: "w"}
		if _, _, err := e.c.Fail(t.Context(), d, dsat.Failure{Message: "broken", Final: true}); err != nil {
			t.Fatal(err)
		}
		return
	}
	t.Fatalf("no token of %s at step %s", task, step)
}
