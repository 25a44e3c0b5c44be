package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/dsat-dev/dsat/dsat"
)

// scheduleBody is the body of PUT /v1/schedules/{id}: a definition
// (dsat.ScheduleSpec); the id comes from the path.
type scheduleBody struct {
	ID       string          `json:"id"`
	Pipeline string          `json:"pipeline"`
	Every    string          `json:"every"`
	Cron     string          `json:"cron"`
	Timezone string          `json:"timezone"`
	Payload  json.RawMessage `json:"payload"`
	Paused   bool            `json:"paused"`
	Catchup  string          `json:"catchup"`
	Jitter   string          `json:"jitter"`
}

// scheduleBodyMargin is what a schedule's body may hold beyond its payload.
const scheduleBodyMargin = 16 << 10

// putSchedule creates (201) or replaces (200) a schedule.
func (a *API) putSchedule(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	body, ok := a.readJSONBody(w, r, a.cfg.MaxPayload+scheduleBodyMargin)
	if !ok {
		return
	}
	var in scheduleBody
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		writeProblem(w, r, http.StatusBadRequest, "invalid-schedule", scheduleDecodeError(err))
		return
	}
	if in.ID != "" && in.ID != id {
		writeProblem(w, r, http.StatusBadRequest, "invalid-schedule",
			fmt.Sprintf("the body's id %q is not the path's %q; leave id out of the body", trimID(in.ID), trimID(id)))
		return
	}
	spec := dsat.ScheduleSpec{ID: id, Pipeline: in.Pipeline, Every: in.Every, Cron: in.Cron, Timezone: in.Timezone,
		Payload: in.Payload, Paused: in.Paused, Catchup: in.Catchup, Jitter: in.Jitter}
	info, created, err := a.c.PutSchedule(r.Context(), spec)
	if err != nil {
		writeScheduleError(w, r, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
		w.Header().Set("Location", "/v1/schedules/"+id)
	}
	writeJSON(w, status, info)
}

// scheduleDecodeError says which field of a schedule body is wrong.
func scheduleDecodeError(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		if te.Field == "" {
			return "the body must be a JSON object such as {\"pipeline\": \"p\", \"every\": \"30s\"}"
		}
		want := "a string"
		if te.Field == "paused" {
			want = "true or false"
		}
		return fmt.Sprintf("field %q must be %s, not a JSON %s", te.Field, want, te.Value)
	}
	if msg, ok := strings.CutPrefix(err.Error(), "json: unknown field "); ok {
		return "unknown field " + msg + "; the fields are pipeline, every, cron, timezone, payload, paused, catchup and jitter"
	}
	return "the body is not a schedule: " + err.Error()
}

func (a *API) listSchedules(w http.ResponseWriter, r *http.Request) {
	list, err := a.c.Schedules(r.Context())
	if err != nil {
		writeScheduleError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

func (a *API) getSchedule(w http.ResponseWriter, r *http.Request) {
	info, err := a.c.GetSchedule(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		writeScheduleError(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, info)
}

func (a *API) deleteSchedule(w http.ResponseWriter, r *http.Request) {
	if err := a.c.DeleteSchedule(r.Context(), chi.URLParam(r, "id")); err != nil {
		writeScheduleError(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// pauseSchedule returns the handler of POST /v1/schedules/{id}/pause
// (paused true) or /resume.
func (a *API) pauseSchedule(paused bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		info, err := a.c.PauseSchedule(r.Context(), chi.URLParam(r, "id"), paused)
		if err != nil {
			writeScheduleError(w, r, err)
			return
		}
		writeJSON(w, http.StatusOK, info)
	}
}

// writeScheduleError maps the schedule errors to problems, and the others
// as writeError does.
func writeScheduleError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, dsat.ErrScheduleNotFound):
		writeProblem(w, r, http.StatusNotFound, "schedule-not-found", err.Error()+"; GET /v1/schedules lists the schedules")
	case errors.Is(err, dsat.ErrInvalidSchedule):
		writeProblem(w, r, http.StatusBadRequest, "invalid-schedule", err.Error())
	case errors.Is(err, dsat.ErrTooManySchedules):
		writeProblem(w, r, http.StatusConflict, "too-many-schedules", err.Error())
	default:
		writeError(w, r, err)
	}
}
