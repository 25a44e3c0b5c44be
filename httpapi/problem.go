package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/rs/zerolog/hlog"

	"github.com/dsat-dev/dsat/dsat"
)

// Problem is an RFC 9457 problem detail, the body of every error response
// (Content-Type application/problem+json).
type Problem struct {
	Type   string `json:"type"`
	Title  string `json:"title"`
	Status int    `json:"status"`
	Detail string `json:"detail"`
}

// problemBase prefixes the problem type URIs (documented in the README).
const problemBase = "https://dsat.dev/problems/"

func writeProblem(w http.ResponseWriter, r *http.Request, status int, kind, detail string) {
	p := Problem{Type: problemBase + kind, Title: http.StatusText(status), Status: status, Detail: detail}
	w.Header().Set("Content-Type", "application/problem+json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(p)
	if status >= 500 {
		hlog.FromRequest(r).Warn().Int("status", status).Str("problem", kind).Msg(detail)
	}
}

// writeError maps an error from the engine to a problem. Sentinels become
// 4xx; anything else comes from talking to Redis and is a 503 (never a 500
// with a stack): the request may be retried.
func writeError(w http.ResponseWriter, r *http.Request, err error) {
	var pe *paramError
	switch {
	case errors.As(err, &pe):
		writeProblem(w, r, http.StatusBadRequest, "unknown-parameter", pe.Error())
	case errors.Is(err, dsat.ErrInvalidTaskID):
		writeProblem(w, r, http.StatusBadRequest, "invalid-task-id", err.Error()+"; task ids look like 06fa1bqk0c8m3pz4tq2hn6v1a8.pipeline.1.0.0")
	case errors.Is(err, dsat.ErrTaskNotFound):
		writeProblem(w, r, http.StatusNotFound, "task-not-found", err.Error()+"; it was never submitted or expired after its retention period")
	case errors.Is(err, dsat.ErrPipelineNotFound):
		writeProblem(w, r, http.StatusNotFound, "pipeline-not-found", err.Error()+"; GET /v1/pipelines lists the loaded pipelines")
	case errors.Is(err, dsat.ErrInvalidPayload):
		writeProblem(w, r, http.StatusBadRequest, "invalid-payload", err.Error())
	case errors.Is(err, dsat.ErrInvalidDelay):
		writeProblem(w, r, http.StatusBadRequest, "invalid-delay", err.Error()+"; use ?delay=<Go duration, at most 8784h> or ?at=<RFC 3339 time within a year>")
	case errors.Is(err, dsat.ErrInvalidDeadline):
		writeProblem(w, r, http.StatusBadRequest, "invalid-deadline", err.Error()+"; use ?deadline=<Go duration such as 10m> or an RFC 3339 time, after the run time and within a year")
	case errors.Is(err, dsat.ErrInvalidPriority):
		writeProblem(w, r, http.StatusBadRequest, "invalid-priority", "parameter priority: "+err.Error())
	case errors.Is(err, dsat.ErrInvalidTrace):
		writeProblem(w, r, http.StatusBadRequest, "invalid-traceparent", "header Traceparent: "+err.Error()+"; send a W3C traceparent or no header")
	case errors.Is(err, dsat.ErrInvalidIdempotencyKey):
		writeProblem(w, r, http.StatusBadRequest, "invalid-idempotency-key", "header Idempotency-Key: "+err.Error()+"; use a shorter key, such as a hash of it")
	case errors.Is(err, dsat.ErrIdempotencyConflict):
		writeProblem(w, r, http.StatusConflict, "idempotency-conflict", err.Error()+"; use a new Idempotency-Key for a different payload")
	case errors.Is(err, dsat.ErrTaskFinal):
		writeProblem(w, r, http.StatusConflict, "task-final", err.Error()+"; only a pending or running task can be cancelled")
	case errors.Is(err, dsat.ErrBacklogFull):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusTooManyRequests, "backlog-full", err.Error()+"; submit again in a moment (the entry step's max_backlog applies backpressure)")
	case errors.Is(err, dsat.ErrStepNotFound):
		writeProblem(w, r, http.StatusConflict, "step-not-found", err.Error()+"; load the pipeline version the task was submitted with")
	case errors.Is(err, dsat.ErrInvalidSearch):
		writeProblem(w, r, http.StatusBadRequest, "invalid-search", err.Error())
	case errors.Is(err, dsat.ErrInvalidWindow):
		writeProblem(w, r, http.StatusBadRequest, "invalid-window", "query parameter \"window\": "+err.Error())
	case errors.Is(err, dsat.ErrTaskNotFailed):
		writeProblem(w, r, http.StatusConflict, "task-not-failed", err.Error()+"; only a failed task can be retried")
	default:
		hlog.FromRequest(r).Error().Err(err).Msg("storage error")
		writeProblem(w, r, http.StatusServiceUnavailable, "unavailable", "Redis is unavailable or too slow right now; retry later")
	}
}

// trimID shortens client input quoted in a problem.
func trimID(v string) string {
	if len(v) > 60 {
		return v[:60] + "..."
	}
	return v
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// paramError is a query parameter a route does not take, or takes once and
// not empty: a typo must not pass unnoticed (a misspelt ?deadline= would
// leave the task without one).
type paramError struct{ name, why string }

func (e *paramError) Error() string {
	return fmt.Sprintf("query parameter %q %s", e.name, e.why)
}

// checkParams refuses query parameters outside known, repeated ones and
// empty ones.
func checkParams(r *http.Request, known ...string) error {
	for name, vs := range r.URL.Query() {
		switch {
		case !slices.Contains(known, name):
			return &paramError{name, fmt.Sprintf("is not one this route takes (it takes %s)", strings.Join(known, ", "))}
		case len(vs) > 1:
			return &paramError{name, "is given more than once"}
		case vs[0] == "":
			return &paramError{name, "is empty: give it a value or leave it out"}
		}
	}
	return nil
}
