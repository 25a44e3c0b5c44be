package httpapi

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/dsat-dev/dsat/dsat"
)

// stats is GET /v1/pipelines/{name}/stats?window=15m: each step's
// throughput, failures and latency percentiles per 10-second bucket over
// the window (dsat.Client.Stats).
func (a *API) stats(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r, "window"); err != nil {
		writeError(w, r, err)
		return
	}
	window, err := dsat.ParseStatsWindow(r.URL.Query().Get("window"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	st, err := a.c.Stats(r.Context(), chi.URLParam(r, "name"), window)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}
