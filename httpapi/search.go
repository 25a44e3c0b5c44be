package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/dsat-dev/dsat/dsat"
)

// Task search and bulk actions (issue 18): GET /v1/tasks,
// POST /v1/pipelines/{name}/retry-failed, …/cancel, …/dead/retry.

// taskPage is the answer of GET /v1/tasks; next is null on the last page.
type taskPage struct {
	Items []dsat.TaskSummary `json:"items"`
	Next  *string            `json:"next"`
}

// bulkResult is the answer of a bulk action; next is null when done.
type bulkResult struct {
	Count int     `json:"count"`
	Next  *string `json:"next"`
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// taskQuery refuses a query parameter not among params, then reads the
// search parameters present among pipeline, status, since, until, limit
// and cursor.
func taskQuery(r *http.Request, params ...string) (dsat.TaskQuery, error) {
	if err := checkParams(r, params...); err != nil {
		return dsat.TaskQuery{}, err
	}
	v := r.URL.Query()
	q := dsat.TaskQuery{Pipeline: v.Get("pipeline"), Cursor: v.Get("cursor")}
	if s := v.Get("status"); s != "" {
		q.Status = strings.Split(s, ",")
	}
	for _, t := range []struct {
		name string
		to   *time.Time
	}{{"since", &q.Since}, {"until", &q.Until}} {
		if s := v.Get(t.name); s != "" {
			tm, err := time.Parse(time.RFC3339Nano, s)
			if err != nil {
				return q, fmt.Errorf("%w: %s must be an RFC 3339 time such as 2026-01-02T15:04:05Z, got %q", dsat.ErrInvalidSearch, t.name, trimID(s))
			}
			*t.to = tm
		}
	}
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > dsat.MaxSearchLimit {
			return q, fmt.Errorf("%w: limit must be a number from 1 to %d, got %q", dsat.ErrInvalidSearch, dsat.MaxSearchLimit, trimID(s))
		}
		q.Limit = n
	}
	return q, nil
}

// searchTasks answers GET /v1/tasks.
func (a *API) searchTasks(w http.ResponseWriter, r *http.Request) {
	q, err := taskQuery(r, "pipeline", "status", "since", "until", "limit", "cursor")
	if err != nil {
		writeError(w, r, err)
		return
	}
	page, err := a.c.Search(r.Context(), q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if page.Items == nil {
		page.Items = []dsat.TaskSummary{}
	}
	writeJSON(w, http.StatusOK, taskPage{Items: page.Items, Next: nullable(page.Next)})
}

// retryFailed answers POST /v1/pipelines/{name}/retry-failed.
func (a *API) retryFailed(w http.ResponseWriter, r *http.Request) {
	a.bulk(w, r, []string{"since", "until", "cursor"}, func(q dsat.TaskQuery) (dsat.BulkResult, error) {
		return a.c.RetryFailed(r.Context(), q)
	})
}

// cancelTasks answers POST /v1/pipelines/{name}/cancel.
func (a *API) cancelTasks(w http.ResponseWriter, r *http.Request) {
	a.bulk(w, r, []string{"status", "since", "until", "cursor", "reason"}, func(q dsat.TaskQuery) (dsat.BulkResult, error) {
		return a.c.CancelTasks(r.Context(), q, r.URL.Query().Get("reason"))
	})
}

// retryDead answers POST /v1/pipelines/{name}/dead/retry.
func (a *API) retryDead(w http.ResponseWriter, r *http.Request) {
	a.bulk(w, r, []string{"before"}, func(q dsat.TaskQuery) (dsat.BulkResult, error) {
		before := r.URL.Query().Get("before")
		if before != "" && !dsat.ValidStreamID(before) {
			return dsat.BulkResult{}, fmt.Errorf("%w: before must be the next of a previous call (<ms>-<seq>)", dsat.ErrInvalidSearch)
		}
		return a.c.RetryDead(r.Context(), q.Pipeline, before)
	})
}

// bulk runs a bulk action on the pipeline of the path.
func (a *API) bulk(w http.ResponseWriter, r *http.Request, params []string, do func(dsat.TaskQuery) (dsat.BulkResult, error)) {
	q, err := taskQuery(r, params...)
	if err == nil {
		q.Pipeline = chi.URLParam(r, "name")
		_, err = a.c.Pipeline(q.Pipeline)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	res, err := do(q)
	if err != nil {
		writeError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, bulkResult{Count: res.Count, Next: nullable(res.Next)})
}
