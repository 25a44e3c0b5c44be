package web

import (
	"net/http/httptest"
	"strings"
	"testing"
)

// TestNoFraming: no other page may frame the dashboard (clickjacking).
func TestNoFraming(t *testing.T) {
	for _, path := range []string{"/", "/app.js"} {
		w := httptest.NewRecorder()
		Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		csp := w.Header().Get("Content-Security-Policy")
		if w.Code != 200 || !strings.Contains(csp, "frame-ancestors 'none'") || w.Header().Get("X-Frame-Options") != "DENY" ||
			!strings.Contains(csp, "default-src 'self'") {
			t.Fatalf("%s: %d, CSP %q, X-Frame-Options %q", path, w.Code, csp, w.Header().Get("X-Frame-Options"))
		}
	}
}
