package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/dsat-dev/dsat/dsat"
)

// submitted is the body of a 202 (or 200, for a replayed idempotency key).
type submitted struct {
	ID       string            `json:"id"`
	Pipeline string            `json:"pipeline"`
	Status   string            `json:"status"`
	Links    map[string]string `json:"links"`
}

func taskLinks(id string) map[string]string {
	return map[string]string{"self": "/v1/tasks/" + id, "events": "/v1/tasks/" + id + "/events",
		"cancel": "/v1/tasks/" + id + "/cancel", "retry": "/v1/tasks/" + id + "/retry"}
}

// readJSONBody enforces the JSON content type and the size limit and
// returns the body. It writes the problem and returns false on bad input.
func readJSONBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, bool) {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		writeProblem(w, r, http.StatusUnsupportedMediaType, "unsupported-media-type",
			fmt.Sprintf("Content-Type is %q; send the payload as JSON with Content-Type: application/json", ct))
		return nil, false
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(limit)))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "payload-too-large",
			fmt.Sprintf("the body is larger than the limit of %d bytes; send a smaller payload or raise the limit", limit))
		return nil, false
	case err != nil:
		writeProblem(w, r, http.StatusBadRequest, "bad-body", "could not read the body: "+err.Error())
		return nil, false
	case len(bytes.TrimSpace(body)) == 0:
		writeProblem(w, r, http.StatusBadRequest, "invalid-json", "the body is empty; send a JSON payload such as {}")
		return nil, false
	case !json.Valid(body):
		writeProblem(w, r, http.StatusBadRequest, "invalid-json", "the body is not one valid JSON value: "+jsonError(body))
		return nil, false
	}
	return body, true
}

// jsonError says where a JSON document breaks.
func jsonError(b []byte) string {
	dec := json.NewDecoder(bytes.NewReader(b))
	var v any
	if err := dec.Decode(&v); err != nil {
		return err.Error()
	}
	return fmt.Sprintf("unexpected data after the JSON value at byte %d", dec.InputOffset())
}

func (a *API) submit(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if _, err := a.c.Pipeline(name); err != nil {
		writeError(w, r, err)
		return
	}
	body, ok := readJSONBody(w, r, a.cfg.MaxPayload)
	if !ok {
		return
	}
	key := r.Header.Get("Idempotency-Key")
	s, err := a.c.Submit(r.Context(), name, body, dsat.SubmitOptions{IdempotencyKey: key, Trace: r.Header.Get("Traceparent")})
	if err != nil {
		writeError(w, r, err)
		return
	}
	w.Header().Set("Location", "/v1/tasks/"+s.ID)
	status := http.StatusAccepted
	if !s.Created {
		status = http.StatusOK
	} else {
		a.cfg.Metrics.submissions.WithLabelValues(name).Inc()
	}
	writeJSON(w, status, submitted{ID: s.ID, Pipeline: name, Status: dsat.StatusPending, Links: taskLinks(s.ID)})
}

func (a *API) submitBatch(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if _, err := a.c.Pipeline(name); err != nil {
		writeError(w, r, err)
		return
	}
	limit := min(a.cfg.MaxPayload*a.cfg.MaxBatch, 64<<20)
	body, ok := readJSONBody(w, r, limit)
	if !ok {
		return
	}
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		writeProblem(w, r, http.StatusBadRequest, "invalid-batch", "the body must be a JSON array of payloads, e.g. [{\"a\":1},{\"a\":2}]")
		return
	}
	switch {
	case len(items) == 0:
		writeProblem(w, r, http.StatusBadRequest, "invalid-batch", "the array is empty; send at least one payload")
		return
	case len(items) > a.cfg.MaxBatch:
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "batch-too-large", fmt.Sprintf("%d payloads; send at most %d per batch", len(items), a.cfg.MaxBatch))
		return
	}
	payloads := make([][]byte, len(items))
	for i, it := range items {
		if len(it) > a.cfg.MaxPayload {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "payload-too-large", fmt.Sprintf("item %d is %d bytes, larger than the limit of %d", i, len(it), a.cfg.MaxPayload))
			return
		}
		payloads[i] = it
	}
	ids, err := a.c.SubmitBatch(r.Context(), name, payloads)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.cfg.Metrics.submissions.WithLabelValues(name).Add(float64(len(ids)))
	writeJSON(w, http.StatusAccepted, map[string]any{"ids": ids})
}
