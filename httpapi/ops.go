package httpapi

import (
	"context"
	"net/http"
	"time"
)

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when Redis answers and every script is loaded (it
// loads missing ones, e.g. after a Redis restart), 503 otherwise.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.c.Ready(ctx); err != nil {
		writeProblem(w, r, http.StatusServiceUnavailable, "not-ready", err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
