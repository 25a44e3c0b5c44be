package dsat_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
	"github.com/dsat-dev/dsat/lua"
)

const linearYAML = `
name: linear
version: 1.0.0
steps:
  a: {handler: echo, next: [b]}
  b: {handler: echo, next: [c]}
  c: {handler: echo}
`

// textstatsYAML is the design's example: a fan-out, a switch and a join.
const textstatsYAML = `
name: textstats
version: 1.2.0
steps:
  normalize: {handler: echo, next: [count, lang]}
  lang:
    handler: echo
    route_by: lang
    routes: {en: [english], default: [other]}
  count:   {handler: echo, next: [report]}
  english: {handler: echo, next: [report]}
  other:   {handler: echo, next: [report]}
  report:  {handler: echo, join: true}
`

func TestLinearPipeline(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		id := h.submit(`{"x":1}`)
		eq(t, "status after submit", h.state(id).Status, dsat.StatusPending)
		h.drain(nil)
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusSucceeded)
		jsonEq(t, "result", st.Result, `{"step":"c","in":{"step":"b","in":{"step":"a","in":{"x":1}}}}`)
		evs := h.events(id)
		eq(t, "events", names(evs), []string{"INIT", "ACK:a", "END:a", "SEND:a", "ACK:b", "END:b", "SEND:b", "ACK:c", "END:c", "HAPPY_END"})
		// The task's log: one line per event; its ids are the seqs.
		log, _ := h.rdb.Get(h.ctx, h.c.Keys().TaskLog(mustID(t, id).Partition, id)).Result()
		eq(t, "lines in the task log", strings.Count(log, "\n"), 10)
		eq(t, "ids", evs[9].ID, "10")
		for i, s := range []string{"a", "b", "c"} {
			eq(t, "step "+s, st.Steps[s], dsat.StepState{State: "done", Token: fmt.Sprint(i + 1), Attempts: 1, Worker: "sat1-w1"})
		}
		h.checkInvariants(id)
		h.streamsEmpty()
		if ttl := h.rdb.PTTL(h.ctx, h.c.Keys().Task(mustID(t, id).Partition, id)).Val(); ttl <= 0 {
			t.Fatalf("finished task has no retention TTL (%v)", ttl)
		}
	})
}

// TestLazyBegin: a handler that returns within the satellite's begin
// window runs without a Begin call; Complete (or Fail) writes its ACK, at
// the time the handler started, in the same entry as its END, and moves
// the task from pending to running.
func TestLazyBegin(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		h.lazy = true
		h.started = h.now.Add(-3 * time.Millisecond)
		id := h.submit(`{"x":1}`)
		for _, d := range h.read("a") {
			h.run(d, echo)
		}
		eq(t, "status after the first step", h.state(id).Status, dsat.StatusRunning)
		evs := h.events(id)
		eq(t, "events", names(evs), []string{"INIT", "ACK:a", "END:a", "SEND:a"})
		eq(t, "ACK right before END", evs[1].Seq+1, evs[2].Seq)
		eq(t, "ACK at the handler's start", evs[1].At.Time.UnixMilli(), h.started.UnixMilli())
		eq(t, "END at the call's time", evs[2].At.Time.UnixMilli(), h.now.UnixMilli())
		eq(t, "ACK worker", evs[1].Worker, h.worker)

		// A failure without a Begin call: ACK, then ERROR and RETRY.
		fails := 0
		h.drain(map[string]handlerFunc{"b": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			if fails++; fails == 1 {
				return nil, "", &dsat.Failure{Message: "boom"}
			}
			return echo(d)
		}})
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusSucceeded)
		eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a", "END:a", "SEND:a",
			"ACK:b", "ERROR:b", "RETRY:b", "ACK:b", "END:b", "SEND:b", "ACK:c", "END:c", "HAPPY_END"})
		h.checkInvariants(id)
		h.streamsEmpty()

		// A begun token (a handler that outlived the window) gets no
		// second ACK.
		h.lazy = false
		id2 := h.submit(`{"x":2}`)
		for _, d := range h.read("a") {
			if _, err := h.c.Begin(h.ctx, d); err != nil {
				t.Fatal(err)
			}
			d.Started = h.started
			if _, err := h.c.Complete(h.ctx, d, []byte(`{}`), ""); err != nil {
				t.Fatal(err)
			}
		}
		eq(t, "events of a begun token", names(h.events(id2)), []string{"INIT", "ACK:a", "END:a", "SEND:a"})
		h.checkInvariants(id2)
	})
}

func mustID(t *testing.T, id string) dsat.TaskID {
	t.Helper()
	tid, err := dsat.ParseTaskID(id)
	if err != nil {
		t.Fatal(err)
	}
	return tid
}

func TestFanOutSwitchJoin(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		for _, tc := range []struct {
			lang, branch string
		}{{"en", "english"}, {"fr", "other"}, {"", "other"}} {
			t.Run(tc.branch+"/"+tc.lang, func(t *testing.T) {
				h := newHarness(t, b, textstatsYAML)
				id := h.submit(fmt.Sprintf(`{"lang":%q}`, tc.lang))
				handlers := map[string]handlerFunc{
					// lang passes its input through, so route_by sees "lang".
					"lang": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
						var in struct {
							In map[string]any `json:"in"`
						}
						_ = jsonUnmarshal(d.Payload, &in)
						return []byte(fmt.Sprintf(`{"lang":%q}`, in.In["lang"])), "", nil
					},
				}
				h.drain(handlers)
				st := h.state(id)
				eq(t, "status", st.Status, dsat.StatusSucceeded)
				eq(t, "report runs", h.runs["report"], 1)
				notTaken := map[string]string{"english": "other", "other": "english"}[tc.branch]
				if _, ran := st.Steps[notTaken]; ran {
					t.Fatalf("branch %s not taken but has state %v", notTaken, st.Steps[notTaken])
				}
				// The join's input is {predecessor: output} of the taken branches.
				var res struct {
					Step string                    `json:"step"`
					In   map[string]map[string]any `json:"in"`
				}
				if err := jsonUnmarshal(st.Result, &res); err != nil {
					t.Fatalf("result: %v: %s", err, st.Result)
				}
				eq(t, "result step", res.Step, "report")
				eq(t, "join input keys", fmt.Sprint(len(res.In), res.In["count"]["step"], res.In[tc.branch]["step"]), fmt.Sprint(2, "count", tc.branch))
				joins := 0
				for _, e := range h.events(id) {
					if e.Event == "SEND" && strings.Contains(string(e.Detail), `"join"`) {
						joins++
					}
				}
				eq(t, "join fired", joins, 1)
				h.checkInvariants(id)
				h.streamsEmpty()
			})
		}
	})
}

// endsYAML fans out to two end steps: the result is {b: ..., c: ...}.
const endsYAML = `
name: ends
version: 1.0.0
steps:
  a: {handler: echo, next: [b, c]}
  b: {handler: echo}
  c: {handler: echo}
`

func TestMultipleEndStepsResult(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, endsYAML)
		id := h.submit(`7`)
		h.drain(nil)
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusSucceeded)
		jsonEq(t, "result", st.Result, `{"b":{"step":"b","in":{"step":"a","in":7}},"c":{"step":"c","in":{"step":"a","in":7}}}`)
		h.checkInvariants(id)
	})
}

func TestDuplicateCompleteAndFail(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		id := h.submit(`{}`)
		d := h.read("a")[0]
		mustOutcome(t, "begin", dsat.Applied)(h.c.Begin(h.ctx, d))
		mustOutcome(t, "begin again (same worker)", dsat.AlreadyApplied)(h.c.Begin(h.ctx, d))
		mustOutcome(t, "complete", dsat.Applied)(h.c.Complete(h.ctx, d, []byte(`1`), ""))
		seq := h.state(id).Seq
		mustOutcome(t, "complete again", dsat.AlreadyApplied)(h.c.Complete(h.ctx, d, []byte(`2`), ""))
		o, _, err := h.c.Fail(h.ctx, d, dsat.Failure{Message: "late"})
		mustOutcome(t, "fail after complete", dsat.AlreadyApplied)(o, err)
		eq(t, "seq unchanged", h.state(id).Seq, seq)
		eq(t, "one token queued for b", h.rdb.XLen(h.ctx, h.c.Keys().Step(mustID(t, id).Partition, "b")).Val(), 1)

		// Duplicate fail on b: the second changes nothing.
		db := h.read("b")[0]
		mustOutcome(t, "begin b", dsat.Applied)(h.c.Begin(h.ctx, db))
		o, mode, err := h.c.Fail(h.ctx, db, dsat.Failure{Message: "boom"})
		mustOutcome(t, "fail b", dsat.Applied)(o, err)
		eq(t, "mode", mode, dsat.FailRetry)
		seq = h.state(id).Seq
		o, _, err = h.c.Fail(h.ctx, db, dsat.Failure{Message: "boom"})
		mustOutcome(t, "fail b again", dsat.AlreadyApplied)(o, err)
		mustOutcome(t, "complete b after fail", dsat.AlreadyApplied)(h.c.Complete(h.ctx, db, []byte(`1`), ""))
		eq(t, "seq unchanged after duplicate fail", h.state(id).Seq, seq)
		eq(t, "one retry scheduled", h.rdb.ZCard(h.ctx, h.c.Keys().Retry(mustID(t, id).Partition)).Val(), 1)
		h.drain(nil)
		eq(t, "status", h.state(id).Status, dsat.StatusSucceeded)
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

func mustOutcome(t *testing.T, what string, want dsat.Outcome) func(dsat.Outcome, error) {
	t.Helper()
	return func(got dsat.Outcome, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if got != want {
			t.Fatalf("%s: outcome %v, want %v", what, got, want)
		}
	}
}

// TestScriptRetriedCall runs the complete script twice with the very same
// arguments, as go-redis does when a reply is lost: one state change.
func TestScriptRetriedCall(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		id := h.submit(`{}`)
		d := h.read("a")[0]
		mustOutcome(t, "begin", dsat.Applied)(h.c.Begin(h.ctx, d))
		keys, args := dsat.CompleteCallForTest(h.c, d, []byte(`{"ok":1}`), "")
		r1, err := lua.Complete.Run(h.ctx, h.rdb, keys, args...).Result()
		if err != nil {
			t.Fatal(err)
		}
		seq := h.state(id).Seq
		r2, err := lua.Complete.Run(h.ctx, h.rdb, keys, args...).Result()
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "first reply", r1, []any{int64(1), ""})
		eq(t, "second reply", r2, []any{int64(0), ""})
		eq(t, "seq", h.state(id).Seq, seq)
		eq(t, "tokens for b", h.rdb.XLen(h.ctx, h.c.Keys().Step(mustID(t, id).Partition, "b")).Val(), 1)
		h.drain(nil)
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

func TestRetriesThenSuccess(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		id := h.submit(`{}`)
		h.drain(map[string]handlerFunc{"b": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			if d.Attempt < 3 {
				return nil, "", &dsat.Failure{Message: fmt.Sprintf("attempt %d failed", d.Attempt), Timeout: d.Attempt == 2}
			}
			return echo(d)
		}})
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusSucceeded)
		eq(t, "b", st.Steps["b"].Attempts, 3)
		eq(t, "runs of b", h.runs["b"], 3)
		eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a", "END:a", "SEND:a",
			"ACK:b", "ERROR:b", "RETRY:b", "ACK:b", "TIMEOUT:b", "RETRY:b", "ACK:b", "END:b", "SEND:b",
			"ACK:c", "END:c", "HAPPY_END"})
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

func TestRetriesExhaustedThenRetry(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		id := h.submit(`{}`)
		healthy := false
		handlers := map[string]handlerFunc{"b": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			if !healthy {
				return nil, "", &dsat.Failure{Message: "disk full"}
			}
			return echo(d)
		}}
		h.drain(handlers)
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusFailed)
		eq(t, "runs of b", h.runs["b"], 4) // 1 + 3 retries
		eq(t, "step b", st.Steps["b"], dsat.StepState{State: "dead", Token: "2", Attempts: 4, Worker: "sat1-w1", Error: "disk full"})
		eq(t, "error", st.Error, "b: disk full")
		evs := h.events(id)
		eq(t, "last events", names(evs[len(evs)-2:]), []string{"ERROR:b", "DEAD"})
		if !strings.Contains(string(evs[len(evs)-2].Detail), `"final":true`) {
			t.Fatalf("last ERROR does not say it is final: %s", evs[len(evs)-2].Detail)
		}
		dead, _, err := h.c.Dead(h.ctx, "linear", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || dead[0].Task != id || dead[0].Step != "b" || dead[0].Reason != "disk full" || dead[0].Attempts != 4 {
			t.Fatalf("dead letters: %+v", dead)
		}
		h.checkInvariants(id)

		if err := h.c.Cancel(h.ctx, id, ""); !errors.Is(err, dsat.ErrTaskFinal) {
			t.Fatalf("cancel of a failed task: %v, want ErrTaskFinal", err)
		}
		healthy = true
		n, err := h.c.Retry(h.ctx, id)
		if err != nil || n != 1 {
			t.Fatalf("retry: %d, %v", n, err)
		}
		eq(t, "status after retry", h.state(id).Status, dsat.StatusRunning)
		if _, err := h.c.Retry(h.ctx, id); !errors.Is(err, dsat.ErrTaskNotFailed) {
			t.Fatalf("second retry: %v, want ErrTaskNotFailed", err)
		}
		h.drain(handlers)
		st = h.state(id)
		eq(t, "status", st.Status, dsat.StatusSucceeded)
		eq(t, "b after re-drive", st.Steps["b"].Attempts, 1)
		dead, _, _ = h.c.Dead(h.ctx, "linear", "", 10)
		eq(t, "dead letters after retry", len(dead), 0)
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}
