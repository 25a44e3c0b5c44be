package httpapi

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/dsat-dev/dsat/dsat"
)

func (a *API) getTask(w http.ResponseWriter, r *http.Request) {
	st, err := a.c.Get(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (a *API) cancel(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := a.c.Cancel(r.Context(), id, r.URL.Query().Get("reason")); err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": dsat.StatusCancelled, "links": taskLinks(id)})
}

func (a *API) retry(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if _, err := dsat.ParseTaskID(id); err != nil && dsat.ValidStreamID(id) {
		writeProblem(w, r, http.StatusBadRequest, "invalid-task-id", fmt.Sprintf("%q is a dead letter's id, not a task id; retry the dead letter's task: its \"task\" field in GET /v1/dead", id))
		return
	}
	n, err := a.c.Retry(r.Context(), id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"id": id, "status": dsat.StatusRunning, "tokens": n, "links": taskLinks(id)})
}

// dead lists dead letters, newest first: ?pipeline= (required), ?limit=
// (1..1000, default 100), ?before= (the next cursor of the previous page).
func (a *API) dead(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	name := q.Get("pipeline")
	if name == "" {
		writeProblem(w, r, http.StatusBadRequest, "missing-pipeline", "add ?pipeline=<name>; GET /v1/pipelines lists them")
		return
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 1000 {
			writeProblem(w, r, http.StatusBadRequest, "bad-limit", "limit must be a number from 1 to 1000")
			return
		}
		limit = n
	}
	before := q.Get("before")
	if before != "" && !dsat.ValidStreamID(before) {
		writeProblem(w, r, http.StatusBadRequest, "bad-cursor", "before must be the next cursor of a previous page (<ms>-<seq>)")
		return
	}
	items, next, err := a.c.Dead(r.Context(), name, before, limit)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if items == nil {
		items = []dsat.DeadLetter{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"items": items, "next": next})
}

func (a *API) satellites(w http.ResponseWriter, r *http.Request) {
	sats, err := a.c.Satellites(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, sats)
}
