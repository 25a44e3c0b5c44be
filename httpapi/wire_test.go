package httpapi

import (
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestConcurrencyIsLowerCase: a step's concurrency is served with
// lower-case fields like every other field, {"min":1,"max":64} (it was
// {"Min":1,"Max":64}; issue 14).
func TestConcurrencyIsLowerCase(t *testing.T) {
	e := newEnv(t, redistest.Backends()[0])
	for _, path := range []string{"/v1/pipelines", "/v1/pipelines/demo"} {
		r := e.do("GET", path, "", "")
		if r.status != 200 || !strings.Contains(r.raw, `"concurrency":{"min":1,"max":64}`) || strings.Contains(r.raw, `"Min"`) {
			t.Fatalf("GET %s: %d %s", path, r.status, r.raw)
		}
	}
}
