package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

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

// MaxDepth is how deeply a payload's arrays and objects may nest. The
// scripts in Redis decode payloads (at a join, with one more level), and
// their JSON decoder stops at 1000 levels; refusing deep payloads at submit
// keeps that failure from surfacing attempts later.
const MaxDepth = 512

// checkContentType writes a 415 and returns false unless the request says
// it carries JSON.
func checkContentType(w http.ResponseWriter, r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	mt, _, err := mime.ParseMediaType(ct)
	if ct == "" || err != nil || (mt != "application/json" && !strings.HasSuffix(mt, "+json")) {
		writeProblem(w, r, http.StatusUnsupportedMediaType, "unsupported-media-type",
			fmt.Sprintf("Content-Type is %q; send the payload as JSON with Content-Type: application/json", ct))
		return false
	}
	return true
}

// payloadProblem says what is wrong with one valid JSON value as a
// payload: bytes that are not UTF-8, or nesting past MaxDepth ("" when
// nothing is).
func payloadProblem(b []byte) string {
	if !utf8.Valid(b) {
		i := 0
		for i < len(b) {
			r, n := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && n <= 1 {
				break
			}
			i += n
		}
		return fmt.Sprintf("the JSON is not valid UTF-8 (first bad byte at offset %d); send text encoded as UTF-8", i)
	}
	if d := jsonDepth(b); d > MaxDepth {
		return fmt.Sprintf("the JSON nests %d levels deep; at most %d levels of arrays and objects are accepted", d, MaxDepth)
	}
	return ""
}

// jsonDepth is the deepest nesting of arrays and objects in b, which must
// be valid JSON.
func jsonDepth(b []byte) int {
	depth, deepest := 0, 0
	inString, escaped := false, false
	for _, c := range b {
		switch {
		case inString:
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
		case c == '"':
			inString = true
		case c == '[' || c == '{':
			depth++
			deepest = max(deepest, depth)
		case c == ']' || c == '}':
			depth--
		}
	}
	return deepest
}

// readJSONBody enforces the JSON content type and the size limit and
// returns the body, read within the API's body budget (a.bodies). It
// writes the problem and returns false on bad input.
func (a *API) readJSONBody(w http.ResponseWriter, r *http.Request, limit int) ([]byte, bool) {
	if !checkContentType(w, r) {
		return nil, false
	}
	tooLarge := func() ([]byte, bool) {
		writeProblem(w, r, http.StatusRequestEntityTooLarge, "payload-too-large",
			fmt.Sprintf("the body is larger than the limit of %d bytes; send a smaller payload or raise the limit", limit))
		return nil, false
	}
	if r.ContentLength > int64(limit) {
		return tooLarge()
	}
	body, held, err := a.bodies.read(r.Context(), http.MaxBytesReader(w, r.Body, int64(limit)), r.ContentLength, int64(limit))
	if err == nil {
		// The body stays in memory until the request ends (the handler
		// returns or times out), and so does its reservation.
		context.AfterFunc(r.Context(), func() { a.bodies.release(held) })
	}
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, errBudgetFull):
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusServiceUnavailable, "busy",
			"too many request bodies are being received at once; retry later")
		return nil, false
	case errors.As(err, &tooBig):
		return tooLarge()
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
	if p := payloadProblem(body); p != "" {
		writeProblem(w, r, http.StatusBadRequest, "invalid-json", p)
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
	body, ok := a.readJSONBody(w, r, a.cfg.MaxPayload)
	if !ok {
		return
	}
	opts, err := submitOptions(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	opts.IdempotencyKey = r.Header.Get("Idempotency-Key")
	span, err := a.submitSpan(r, name, &opts, 1)
	if err != nil {
		writeError(w, r, err)
		return
	}
	s, err := a.c.Submit(r.Context(), name, body, opts)
	endSubmitSpan(span, s.ID, err)
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
	st := dsat.StatusPending
	if opts.RunAt.After(time.Now()) {
		st = dsat.StatusScheduled
	}
	writeJSON(w, status, submitted{ID: s.ID, Pipeline: name, Status: st, Links: taskLinks(s.ID)})
}

// submitOptions reads the options of a submission from its query and
// headers: ?delay= or ?at=, ?deadline=, ?priority=, Traceparent.
func submitOptions(r *http.Request) (dsat.SubmitOptions, error) {
	if err := checkParams(r, "delay", "at", "deadline", "priority"); err != nil {
		return dsat.SubmitOptions{}, err
	}
	at, err := runAt(r)
	if err != nil {
		return dsat.SubmitOptions{}, err
	}
	dl, err := deadline(r)
	if err != nil {
		return dsat.SubmitOptions{}, err
	}
	pr, err := dsat.ParsePriority(r.URL.Query().Get("priority")) // issue 16; every task of a batch
	if err != nil {
		return dsat.SubmitOptions{}, err
	}
	return dsat.SubmitOptions{Trace: r.Header.Get("Traceparent"), RunAt: at, Deadline: dl, Priority: pr}, nil
}

// deadline reads ?deadline=: a Go duration from now (10m) or an RFC 3339
// time; zero when absent. dsat checks it against now and the run time.
func deadline(r *http.Request) (time.Time, error) {
	v := r.URL.Query().Get("deadline")
	if v == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(v); err == nil {
		if d <= 0 {
			return time.Time{}, fmt.Errorf("%w: deadline %q is not a positive duration", dsat.ErrInvalidDeadline, trimID(v))
		}
		return time.Now().Add(d), nil
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: deadline %q is neither a Go duration (10m, 2h) nor an RFC 3339 time", dsat.ErrInvalidDeadline, trimID(v))
	}
	return t, nil
}

// runAt reads a delayed submission's run time: ?delay=<Go duration> or
// ?at=<RFC 3339>; zero when neither is given (run at once). A past time or
// a zero delay also runs at once; more than dsat.MaxDelay ahead is refused
// by dsat.
func runAt(r *http.Request) (time.Time, error) {
	q := r.URL.Query()
	delay, at := q.Get("delay"), q.Get("at")
	switch {
	case delay != "" && at != "":
		return time.Time{}, fmt.Errorf("%w: give ?delay= or ?at=, not both", dsat.ErrInvalidDelay)
	case delay != "":
		d, err := time.ParseDuration(delay)
		if err != nil || d < 0 {
			return time.Time{}, fmt.Errorf("%w: delay %q is not a positive Go duration (30s, 5m, 2h)", dsat.ErrInvalidDelay, trimID(delay))
		}
		if d == 0 {
			return time.Time{}, nil
		}
		return time.Now().Add(d), nil
	case at != "":
		t, err := time.Parse(time.RFC3339Nano, at)
		if err != nil {
			return time.Time{}, fmt.Errorf("%w: at %q is not an RFC 3339 time (2026-12-01T09:00:00Z)", dsat.ErrInvalidDelay, trimID(at))
		}
		return t, nil
	}
	return time.Time{}, nil
}

func (a *API) submitBatch(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if _, err := a.c.Pipeline(name); err != nil {
		writeError(w, r, err)
		return
	}
	if r.Header.Get("Idempotency-Key") != "" {
		writeProblem(w, r, http.StatusBadRequest, "idempotency-key-unsupported",
			"Idempotency-Key is not supported on /batch (a retried batch would not be deduplicated); "+
				"send the batch without it, or submit each task to POST /v1/pipelines/"+name+"/tasks with a key of its own")
		return
	}
	if !checkContentType(w, r) {
		return
	}
	// A bounded number of batch bodies are read at once, each capped in
	// bytes: batch bodies are the largest the API accepts.
	select {
	case a.batchSlots <- struct{}{}:
		defer func() { <-a.batchSlots }()
	case <-r.Context().Done():
		w.Header().Set("Retry-After", "1")
		writeProblem(w, r, http.StatusServiceUnavailable, "busy", "too many batches are being submitted at once; retry later")
		return
	}
	opts, err := submitOptions(r)
	if err != nil {
		writeError(w, r, err)
		return
	}
	payloads, ok := a.decodeBatch(w, r)
	if !ok {
		return
	}
	span, err := a.submitSpan(r, name, &opts, len(payloads))
	if err != nil {
		writeError(w, r, err)
		return
	}
	ids, err := a.c.SubmitBatch(r.Context(), name, payloads, opts)
	endSubmitSpan(span, "", err)
	if err != nil {
		writeError(w, r, err)
		return
	}
	a.cfg.Metrics.submissions.WithLabelValues(name).Add(float64(len(ids)))
	writeJSON(w, http.StatusAccepted, map[string]any{"ids": ids})
}

// decodeBatch reads the body as a stream: the array's items one at a time,
// stopping at the first one that breaks a limit. It writes the problem and
// returns false on bad input.
func (a *API) decodeBatch(w http.ResponseWriter, r *http.Request) ([][]byte, bool) {
	limit := a.cfg.MaxBatchBytes
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, int64(limit)))
	fail := func(err error, detail string) ([][]byte, bool) {
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "payload-too-large",
				fmt.Sprintf("the batch body is larger than the limit of %d bytes; split it into smaller batches", limit))
		case err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) && !isSyntaxError(err):
			writeProblem(w, r, http.StatusBadRequest, "bad-body", "could not read the body: "+err.Error())
		default:
			writeProblem(w, r, http.StatusBadRequest, "invalid-batch", detail)
		}
		return nil, false
	}
	const want = "the body must be a JSON array of payloads, e.g. [{\"a\":1},{\"a\":2}]"
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fail(nil, "the body is empty; "+want)
		}
		return fail(err, want+": "+err.Error())
	}
	if d, ok := tok.(json.Delim); !ok || d != '[' {
		return fail(nil, want)
	}
	var payloads [][]byte
	for dec.More() {
		i := len(payloads)
		if i == a.cfg.MaxBatch {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "batch-too-large", fmt.Sprintf("more than %d payloads; send at most %d per batch", a.cfg.MaxBatch, a.cfg.MaxBatch))
			return nil, false
		}
		var item json.RawMessage
		if err := dec.Decode(&item); err != nil {
			return fail(err, fmt.Sprintf("item %d is not valid JSON: %v", i, err))
		}
		if len(item) > a.cfg.MaxPayload {
			writeProblem(w, r, http.StatusRequestEntityTooLarge, "payload-too-large", fmt.Sprintf("item %d is %d bytes, larger than the limit of %d", i, len(item), a.cfg.MaxPayload))
			return nil, false
		}
		if p := payloadProblem(item); p != "" {
			return fail(nil, fmt.Sprintf("item %d: %s", i, p))
		}
		payloads = append(payloads, item)
	}
	if _, err := dec.Token(); err != nil { // the closing ]
		if errors.Is(err, io.EOF) {
			return fail(nil, "the body ends inside the array; close it with ]")
		}
		return fail(err, want+": "+err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return fail(err, "")
		}
		return fail(nil, fmt.Sprintf("the body is not one valid JSON value: unexpected data after the JSON value at byte %d", dec.InputOffset()))
	}
	if len(payloads) == 0 {
		return fail(nil, "the array is empty; send at least one payload")
	}
	return payloads, true
}

func isSyntaxError(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}
