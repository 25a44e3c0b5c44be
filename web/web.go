// Package web holds dsat's dashboard: plain HTML, CSS and JavaScript,
// embedded in the binary and served at / by dsat serve and dsat dev. It
// uses only the public HTTP API: pipelines drawn as graphs with live step
// load, a submit form, a task page with a live timeline (EventSource), dead
// letters, schedules (with pause and resume) and satellites, and a
// favicon. No asset comes from the internet.
package web

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed static
var static embed.FS

// Handler serves the dashboard.
func Handler() http.Handler {
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic("web: " + err.Error())
	}
	files := http.FileServer(http.FS(sub))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// frame-ancestors 'none' (and X-Frame-Options for older browsers):
		// no other page may frame the dashboard and trick clicks on it.
		w.Header().Set("Content-Security-Policy", "default-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		if r.URL.Path == "/favicon.ico" {
			// Browsers ask for it before they read the page's <link rel="icon">.
			r2 := r.Clone(r.Context())
			r2.URL.Path = "/favicon.svg"
			r = r2
		}
		files.ServeHTTP(w, r)
	})
}
