package httpapi

import (
	"github.com/rs/zerolog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestFallbackAnswersAreProblems: a path no route and no dashboard file
// answers is the API's problem+json 404, not the file server's plain
// text; a 405 names the allowed methods in Allow.
func TestFallbackAnswersAreProblems(t *testing.T) {
	t.Parallel()
	files := http.FileServer(http.FS(fstest.MapFS{"index.html": {Data: []byte("<p>dashboard</p>")}}))
	// Not newEnv: its OpenAPI check refuses the dashboard's paths.
	rdb, _ := redistest.Backends()[0].New(t)
	c := demoClient(t, rdb)
	api := NewRouter(Config{Client: c, Logger: zerolog.Nop(), Static: files})
	srv := httptest.NewServer(api)
	t.Cleanup(func() { api.Close(); srv.Close() })
	e := &env{t: t, srv: srv}

	if r := e.do("GET", "/index.html", "", ""); r.status != 301 && r.status != 200 {
		t.Fatalf("a dashboard file: %d %s", r.status, r.raw)
	}
	if r := e.do("GET", "/", "", ""); r.status != 200 || !strings.Contains(r.raw, "dashboard") {
		t.Fatalf("the dashboard: %d %s", r.status, r.raw)
	}
	for _, path := range []string{"/nope", "/v1/nowhere", "/static/app.js.map"} {
		r := e.do("GET", path, "", "")
		if r.status != 404 || r.header.Get("Content-Type") != "application/problem+json" || r.body["status"] != float64(404) ||
			!strings.Contains(r.body["detail"].(string), path) {
			t.Errorf("GET %s: %d %q %s", path, r.status, r.header.Get("Content-Type"), r.raw)
		}
	}
	for _, tc := range []struct{ method, path, allow string }{
		{"GET", "/v1/pipelines/demo/batch", "POST"},
		{"DELETE", "/v1/pipelines/demo", "GET"},
		{"POST", "/v1/schedules/x", "GET, PUT, DELETE"},
	} {
		r := e.do(tc.method, tc.path, "", "")
		if r.status != 405 || r.header.Get("Allow") != tc.allow || r.header.Get("Content-Type") != "application/problem+json" {
			t.Errorf("%s %s: %d Allow %q %s; want 405 Allow %q", tc.method, tc.path, r.status, r.header.Get("Allow"), r.raw, tc.allow)
		}
	}
}
