package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/dsat-dev/dsat/lua"
)

func (a *API) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz answers 200 when Redis answers and every script is loaded (it
// loads missing ones, e.g. after a Redis restart), 503 otherwise.
func (a *API) readyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	rdb := a.c.Redis()
	if err := rdb.Ping(ctx).Err(); err != nil {
		writeProblem(w, r, http.StatusServiceUnavailable, "not-ready", "Redis does not answer: "+err.Error())
		return
	}
	for name, s := range lua.All {
		ok, err := s.Exists(ctx, rdb).Result()
		if err == nil && len(ok) == 1 && ok[0] {
			continue
		}
		if err := s.Load(ctx, rdb).Err(); err != nil {
			writeProblem(w, r, http.StatusServiceUnavailable, "not-ready", "cannot load script "+name+": "+err.Error())
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
}
