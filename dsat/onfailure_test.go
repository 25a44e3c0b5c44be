package dsat_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const onFailureYAML = `
name: onf
version: 1.0.0
steps:
  a: {handler: echo, next: [b, c]}
  b: {handler: echo, retries: 0}
  c: {handler: echo}
  alert: {handler: echo, retries: 0}
on_failure: alert
`

// failB makes step b fail for good.
func failB(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
	return nil, "", &dsat.Failure{Message: "b broke", Final: true}
}

// TestOnFailure: a task that fails runs its failure handler once, with
// the first dead token's step, error and input, and ends DEAD after it;
// the handler's own failure is dead-lettered without running it again; a
// retried task that fails again runs it again; a task that succeeds never
// runs it.
func TestOnFailure(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		t.Run("runs once with the failure", func(t *testing.T) {
			h := newHarness(t, b, onFailureYAML)
			id := h.submit(`{"n":1}`)
			var input []byte
			h.drain(map[string]handlerFunc{"b": failB, "alert": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
				input = d.Payload
				return []byte(`{"alerted":true}`), "", nil
			}})
			eq(t, "runs", h.runs, map[string]int{"a": 1, "b": 1, "c": 1, "alert": 1})
			// b died first; c's END (in complete.lua) is what left nothing
			// alive: the handler is queued there, DEAD follows its END.
			eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a", "END:a", "SEND:a", "SEND:a",
				"ACK:b", "ERROR:b", "ACK:c", "END:c", "SEND", "ACK:alert", "END:alert", "DEAD"})
			jsonEq(t, "handler input", input, `{"task":"`+id+`","step":"b","error":"b broke","input":{"step":"a","in":{"n":1}}}`)
			st := h.state(id)
			eq(t, "status", st.Status, dsat.StatusFailed)
			eq(t, "error", st.Error, "b: b broke")
			evs := h.events(id)
			jsonEq(t, "SEND detail", evs[9].Detail, `{"to":"alert","token":"4","on_failure":true}`)
			var dead struct {
				Dead  int    `json:"dead"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal(evs[len(evs)-1].Detail, &dead); err != nil || dead.Dead != 1 || dead.Error != "b: b broke" {
				t.Fatalf("DEAD detail %s", evs[len(evs)-1].Detail)
			}
			h.checkInvariants(id)
			h.streamsEmpty()

			// A retry re-drives b only; failing again runs the handler again.
			n, err := h.c.Retry(h.ctx, id)
			if err != nil || n != 1 {
				t.Fatalf("retry: %d %v", n, err)
			}
			h.drain(map[string]handlerFunc{"b": failB})
			eq(t, "runs after retry", h.runs, map[string]int{"a": 1, "b": 2, "c": 1, "alert": 2})
			eq(t, "status after retry", h.state(id).Status, dsat.StatusFailed)
			h.checkInvariants(id)

			// And succeeding after a retry: no handler run, the result holds
			// no handler output.
			if _, err := h.c.Retry(h.ctx, id); err != nil {
				t.Fatal(err)
			}
			h.drain(nil)
			st = h.state(id)
			eq(t, "runs after success", h.runs["alert"], 2)
			eq(t, "status after success", st.Status, dsat.StatusSucceeded)
			jsonEq(t, "result", st.Result, `{"b":{"step":"b","in":{"step":"a","in":{"n":1}}},"c":{"step":"c","in":{"step":"a","in":{"n":1}}}}`)
			h.checkInvariants(id)
		})
		t.Run("never for a task that succeeds", func(t *testing.T) {
			h := newHarness(t, b, onFailureYAML)
			id := h.submit(`{}`)
			h.drain(nil)
			eq(t, "status", h.state(id).Status, dsat.StatusSucceeded)
			eq(t, "handler runs", h.runs["alert"], 0)
			h.checkInvariants(id)
		})
		t.Run("its own failure does not re-trigger it", func(t *testing.T) {
			h := newHarness(t, b, onFailureYAML)
			id := h.submit(`{}`)
			h.drain(map[string]handlerFunc{"b": failB, "alert": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
				return nil, "", &dsat.Failure{Message: "pager down"}
			}})
			eq(t, "handler runs", h.runs["alert"], 1)
			st := h.state(id)
			eq(t, "status", st.Status, dsat.StatusFailed)
			eq(t, "error", st.Error, "b: b broke")
			eq(t, "handler step", st.Steps["alert"].State+" "+st.Steps["alert"].Error, "dead pager down")
			evs := names(h.events(id))
			eq(t, "last events", strings.Join(evs[len(evs)-3:], " "), "ACK:alert ERROR:alert DEAD")
			dl, _, err := h.c.Dead(h.ctx, "onf", "", 10)
			if err != nil || len(dl) != 2 {
				t.Fatalf("dead letters: %v %v", dl, err)
			}
			h.checkInvariants(id)
			// A retry re-drives the task's dead token, not the handler's.
			n, err := h.c.Retry(h.ctx, id)
			if err != nil || n != 1 {
				t.Fatalf("retry: %d %v", n, err)
			}
			h.drain(nil)
			eq(t, "status after retry", h.state(id).Status, dsat.StatusSucceeded)
			eq(t, "handler runs after retry", h.runs["alert"], 1)
			h.checkInvariants(id)
		})
	})
}

// TestOnFailureWithJoin: a branch that dies before a join runs the
// failure handler while the other branch waits parked at the join; a
// retry re-drives the dead branch and the join fires.
func TestOnFailureWithJoin(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, `
name: onfj
version: 1.0.0
steps:
  a: {handler: echo, next: [b, c]}
  b: {handler: echo, retries: 0, next: [j]}
  c: {handler: echo, next: [j]}
  j: {handler: echo, join: true}
  alert: {handler: echo}
on_failure: alert
`)
		id := h.submit(`{}`)
		h.drain(map[string]handlerFunc{"b": failB})
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusFailed)
		eq(t, "runs", h.runs, map[string]int{"a": 1, "b": 1, "c": 1, "alert": 1})
		eq(t, "the join waits", st.Steps["j"].State, "waiting")
		h.checkInvariants(id)
		if _, err := h.c.Retry(h.ctx, id); err != nil {
			t.Fatal(err)
		}
		h.drain(nil)
		st = h.state(id)
		eq(t, "status after retry", st.Status, dsat.StatusSucceeded)
		eq(t, "runs after retry", h.runs, map[string]int{"a": 1, "b": 2, "c": 1, "alert": 1, "j": 1})
		h.checkInvariants(id)
	})
}

// TestOnFailureWithMap: with a map and a join policy too (fail.lua gets
// both argument sets): an item that dies under join: all runs the
// failure handler once; under settled the task succeeds and never runs it.
func TestOnFailureWithMap(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		for _, policy := range []string{"all", "settled"} {
			h := newHarness(t, b, fmt.Sprintf(mapYAML, policy)+"  alert: {handler: echo}\non_failure: alert\n")
			id := h.submit(`{"items":[1,2,3]}`)
			h.drain(map[string]handlerFunc{"split": pass, "work": failOn("2"), "collect": pass})
			st := h.state(id)
			if policy == "all" {
				eq(t, "status", st.Status, dsat.StatusFailed)
				eq(t, "alert runs", h.runs["alert"], 1)
				eq(t, "items", fmt.Sprint(st.Steps["work"].Items), "map[dead:1 done:2]")
				if n, err := h.c.Retry(h.ctx, id); err != nil || n != 1 {
					t.Fatalf("retry: %d %v", n, err)
				}
				h.drain(map[string]handlerFunc{"work": wrap, "collect": pass})
				eq(t, "join input after retry", joinInput(t, h, id), `[{"v":1},{"v":2},{"v":3}]`)
			} else {
				eq(t, "status", st.Status, dsat.StatusSucceeded)
				eq(t, "alert runs", h.runs["alert"], 0)
			}
			h.checkInvariants(id)
		}
	})
}
