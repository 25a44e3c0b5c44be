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

// TestFavicon: the dashboard has an icon (an SVG), also at /favicon.ico
// where browsers look first; the page links it (issue 14).
func TestFavicon(t *testing.T) {
	for _, path := range []string{"/favicon.svg", "/favicon.ico"} {
		w := httptest.NewRecorder()
		Handler().ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		if w.Code != 200 || w.Header().Get("Content-Type") != "image/svg+xml" || !strings.HasPrefix(w.Body.String(), "<svg ") {
			t.Fatalf("%s: %d %q %.40s", path, w.Code, w.Header().Get("Content-Type"), w.Body.String())
		}
	}
	w := httptest.NewRecorder()
	Handler().ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
	if !strings.Contains(w.Body.String(), `<link rel="icon" href="favicon.svg" type="image/svg+xml">`) {
		t.Fatal("index.html does not link the icon")
	}
}
