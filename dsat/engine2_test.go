package dsat_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func TestCancel(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		t.Run("queued", func(t *testing.T) {
			h := newHarness(t, b, linearYAML)
			id := h.submit(`{}`)
			if err := h.c.Cancel(h.ctx, id, "user asked"); err != nil {
				t.Fatal(err)
			}
			h.drain(nil)
			eq(t, "events", names(h.events(id)), []string{"INIT", "CANCELLED"})
			eq(t, "runs", h.runs["a"], 0)
			eq(t, "status", h.state(id).Status, dsat.StatusCancelled)
			eq(t, "a's state after the cancel", h.state(id).Steps["a"].State, "cancelled")
			if err := h.c.Cancel(h.ctx, id, ""); !errors.Is(err, dsat.ErrTaskFinal) {
				t.Fatalf("second cancel: %v", err)
			}
			h.checkInvariants(id)
			h.streamsEmpty()
		})
		t.Run("running", func(t *testing.T) {
			h := newHarness(t, b, linearYAML)
			id := h.submit(`{}`)
			d := h.read("a")[0]
			mustOutcome(t, "begin", dsat.Applied)(h.c.Begin(h.ctx, d))
			if err := h.c.Cancel(h.ctx, id, ""); err != nil {
				t.Fatal(err)
			}
			// A step running when its task was cancelled shows cancelled
			// (its handler is told; it never ends the step), also after
			// its handler returned.
			st := h.state(id)
			eq(t, "a's state after the cancel", st.Steps["a"].State, "cancelled")
			eq(t, "a's attempts", st.Steps["a"].Attempts, 1)
			mustOutcome(t, "complete after cancel", dsat.Dropped)(h.c.Complete(h.ctx, d, []byte(`1`), ""))
			eq(t, "a's state after its handler returned", h.state(id).Steps["a"].State, "cancelled")
			h.drain(nil)
			eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a", "CANCELLED"})
			h.checkInvariants(id)
			h.streamsEmpty()
		})
	})
}

func TestIdempotentSubmit(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		opts := dsat.SubmitOptions{IdempotencyKey: "order-42 {weird} key"}
		s1, err := h.c.Submit(h.ctx, "linear", []byte(`{"n":1}`), opts)
		if err != nil || !s1.Created {
			t.Fatalf("first submit: %+v %v", s1, err)
		}
		s2, err := h.c.Submit(h.ctx, "linear", []byte(`{"n":1}`), opts)
		if err != nil || s2.Created || s2.ID != s1.ID {
			t.Fatalf("same key, same payload: %+v %v (first %s)", s2, err, s1.ID)
		}
		_, err = h.c.Submit(h.ctx, "linear", []byte(`{"n":2}`), opts)
		if !errors.Is(err, dsat.ErrIdempotencyConflict) {
			t.Fatalf("same key, other payload: %v, want ErrIdempotencyConflict", err)
		}
		h.drain(nil)
		eq(t, "runs of a", h.runs["a"], 1)
		h.checkInvariants(s1.ID)
	})
}

func TestSubmitRejects(t *testing.T) {
	t.Parallel()
	h := newHarness(t, redistest.Backends()[0], linearYAML)
	for _, tc := range []struct {
		name, pipeline, payload string
		want                    error
	}{
		{"unknown pipeline", "nope", `{}`, dsat.ErrPipelineNotFound},
		{"bad JSON", "linear", `{`, dsat.ErrInvalidPayload},
		{"trailing garbage", "linear", `{} x`, dsat.ErrInvalidPayload},
		{"too big", "linear", `"` + strings.Repeat("x", dsat.DefaultMaxPayload) + `"`, dsat.ErrInvalidPayload},
	} {
		if _, err := h.c.Submit(h.ctx, tc.pipeline, []byte(tc.payload), dsat.SubmitOptions{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if n := len(h.mini.Keys()); n != len(h.p.Order) {
		t.Fatalf("rejected submissions wrote keys: %v", h.mini.Keys())
	}
}

func TestSubmitBatch(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		if err := h.rdb.ScriptFlush(h.ctx).Err(); err != nil {
			t.Fatal(err)
		}
		ids, err := h.c.SubmitBatch(h.ctx, "linear", [][]byte{[]byte(`1`), []byte(`2`), []byte(`3`)})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "ids", len(ids), 3)
		if _, err := h.c.SubmitBatch(h.ctx, "linear", [][]byte{[]byte(`1`), []byte(`{`)}); !errors.Is(err, dsat.ErrInvalidPayload) {
			t.Fatalf("bad item: %v", err)
		}
		h.drain(nil)
		for i, id := range ids {
			st := h.state(id)
			eq(t, "status", st.Status, dsat.StatusSucceeded)
			jsonEq(t, "result", st.Result, `{"step":"c","in":{"step":"b","in":{"step":"a","in":`+string(rune('1'+i))+`}}}`)
			h.checkInvariants(id)
		}
	})
}

func TestMalformedEntryGoesToDeadLetters(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		key := h.c.Keys().Step(h.p.Partition(0), "a")
		if err := h.rdb.XAdd(h.ctx, &redis.XAddArgs{Stream: key, Values: []any{"task", "x", "junk", "1"}}).Err(); err != nil {
			t.Fatal(err)
		}
		id := h.submit(`{}`)
		h.drain(nil)
		eq(t, "good task", h.state(id).Status, dsat.StatusSucceeded)
		dead, _, err := h.c.Dead(h.ctx, "linear", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(dead) != 1 || dead[0].Step != "a" || !strings.Contains(dead[0].Reason, "invalid envelope") || dead[0].Raw == "" {
			t.Fatalf("dead letters: %+v", dead)
		}
		h.streamsEmpty()
	})
}

func TestNoRoute(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, `
name: sw
version: 1.0.0
steps:
  pick: {handler: echo, routes: {a: [x], b: [y]}}
  x: {handler: echo}
  y: {handler: echo}
`)
		ok := h.submit(`{}`)
		bad := h.submit(`{}`)
		h.drain(map[string]handlerFunc{"pick": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			if d.Task == ok {
				return []byte(`{"route":"b"}`), "", nil // route_by defaults to "route"
			}
			return []byte(`{"route":"zzz"}`), "", nil
		}})
		eq(t, "routed task", h.state(ok).Status, dsat.StatusSucceeded)
		eq(t, "routed to y", names(h.events(ok))[4], "ACK:y")
		st := h.state(bad)
		eq(t, "unrouted task", st.Status, dsat.StatusFailed)
		if !strings.Contains(st.Error, `no route matches: label "zzz"`) {
			t.Fatalf("error %q does not say which label had no route", st.Error)
		}
		eq(t, "runs of pick", h.runs["pick"], 2) // no retry for a routing error
		h.checkInvariants(ok)
		h.checkInvariants(bad)
		h.streamsEmpty()
	})
}

func TestSnooze(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		id := h.submit(`{}`)
		h.drain(map[string]handlerFunc{"a": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			if h.runs["a"] < 3 {
				return nil, "", &dsat.Failure{Snooze: time.Minute}
			}
			return echo(d)
		}})
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusSucceeded)
		eq(t, "attempts of a (snoozes do not count)", st.Steps["a"].Attempts, 1)
		eq(t, "runs of a", h.runs["a"], 3)
		h.checkInvariants(id)
	})
}

// TestDeadBranchHoldsJoin: a branch that dies keeps the join from firing;
// the task ends DEAD with the other branch parked, and a retry of the dead
// branch fires the join with both inputs.
func TestDeadBranchHoldsJoin(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, textstatsYAML)
		id := h.submit(`{"lang":"en"}`)
		broken := true
		handlers := map[string]handlerFunc{
			"lang": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) { return []byte(`{"lang":"en"}`), "", nil },
			"count": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
				if broken {
					return nil, "", &dsat.Failure{Message: "cannot count", Final: true}
				}
				return echo(d)
			},
		}
		h.drain(handlers)
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusFailed)
		eq(t, "report", st.Steps["report"].State, "waiting")
		eq(t, "report runs", h.runs["report"], 0)
		h.checkInvariants(id)
		broken = false
		if _, err := h.c.Retry(h.ctx, id); err != nil {
			t.Fatal(err)
		}
		h.drain(handlers)
		st = h.state(id)
		eq(t, "status", st.Status, dsat.StatusSucceeded)
		eq(t, "report runs", h.runs["report"], 1)
		var res struct {
			In map[string]any `json:"in"`
		}
		_ = json.Unmarshal(st.Result, &res)
		eq(t, "join inputs", len(res.In), 2)
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

func TestEventsFollow(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		id := h.submit(`{}`)
		done := make(chan []string)
		go func() {
			var got []string
			for e, err := range h.c.Events(h.ctx, id, "") {
				if err != nil {
					got = append(got, "error: "+err.Error())
					break
				}
				got = append(got, e.Event)
			}
			done <- got
		}()
		time.Sleep(50 * time.Millisecond)
		h.drain(nil)
		select {
		case got := <-done:
			eq(t, "followed events", len(got), 10)
			eq(t, "last", got[len(got)-1], "HAPPY_END")
		case <-time.After(5 * time.Second):
			t.Fatal("Events did not end after HAPPY_END")
		}
		// Resume after any event (END:a is inside an entry, "<id>.1"): the
		// rest, no duplicates.
		all := h.events(id)
		for i := range all[:len(all)-1] {
			var rest []dsat.Event
			for e, err := range h.c.Events(h.ctx, id, all[i].ID) {
				if err != nil {
					t.Fatal(err)
				}
				rest = append(rest, e)
			}
			eq(t, "resumed after "+all[i].ID, names(rest), names(all[i+1:]))
		}
		for _, err := range h.c.Events(h.ctx, dsat.NewTaskID(h.p.Partition(0), time.Now()).String(), "") {
			if !errors.Is(err, dsat.ErrTaskNotFound) {
				t.Fatalf("unknown task: %v", err)
			}
		}
	})
}

// TestHistoryPages (review 8): a task's history is read a page at a time
// (a feed replaying a long one held it whole: 5 feeds of a 15 MB log took
// 1 GB), whatever the page boundaries cut, with resumes after any event;
// LastEvent reads only the log's end.
func TestHistoryPages(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		id := h.submit(`{}`)
		h.drain(nil)
		all, err := h.c.History(h.ctx, id, "", 0)
		if err != nil || len(all) < 5 {
			t.Fatalf("history %v %v", names(all), err)
		}
		for _, chunk := range []int64{1, 7, 64, 100000} {
			dsat.SetHistoryChunkForTest(h.c, chunk)
			var got []dsat.Event
			pages := 0
			last, err := h.c.HistoryPages(h.ctx, id, "", func(p []dsat.Event) bool {
				pages++
				got = append(got, p...)
				return true
			})
			if err != nil {
				t.Fatal(err)
			}
			eq(t, fmt.Sprintf("chunk %d: events", chunk), got, all)
			eq(t, fmt.Sprintf("chunk %d: last", chunk), last, all[len(all)-1])
			if chunk <= 64 && pages < len(all)/3 {
				t.Fatalf("chunk %d: %d pages for %d events: the log was not read a part at a time", chunk, pages, len(all))
			}
			if chunk > 1000 && pages != 1 {
				t.Fatalf("a short history: %d pages", pages)
			}
			var rest []dsat.Event
			if _, err := h.c.HistoryPages(h.ctx, id, all[3].ID, func(p []dsat.Event) bool { rest = append(rest, p...); return true }); err != nil {
				t.Fatal(err)
			}
			eq(t, fmt.Sprintf("chunk %d: after %s", chunk, all[3].ID), rest, all[4:])
			// Stopping early stops the reads.
			pages = 0
			if _, err := h.c.HistoryPages(h.ctx, id, "", func([]dsat.Event) bool { pages++; return false }); err != nil || pages != 1 {
				t.Fatalf("chunk %d: stop after the first page: %d pages, %v", chunk, pages, err)
			}
		}
		last, err := h.c.LastEvent(h.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "last event", last, all[len(all)-1])
		// A last event longer than LastEvent's first read (the test's
		// chunk, 64 bytes here; its DEAD carries a 2 KB error).
		dsat.SetHistoryChunkForTest(h.c, 64)
		long := h.submit(`{}`)
		msg := strings.Repeat("x", 20000)
		h.drain(map[string]handlerFunc{"b": func(dsat.Delivery) ([]byte, string, *dsat.Failure) {
			return nil, "", &dsat.Failure{Message: msg, Final: true}
		}})
		longAll, err := h.c.History(h.ctx, long, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		if l := longAll[len(longAll)-1]; l.Event != "DEAD" || len(l.Detail) < 2000 {
			t.Fatalf("the long task ends with %s %.80s", l.Event, l.Detail)
		}
		if last, err := h.c.LastEvent(h.ctx, long); err != nil || !reflect.DeepEqual(last, longAll[len(longAll)-1]) {
			t.Fatalf("last event of the long task: %.100v %v", last, err)
		}
		unknown := dsat.NewTaskID(h.p.Partition(0), time.Now()).String()
		if e, err := h.c.LastEvent(h.ctx, unknown); err != nil || e.Seq != 0 {
			t.Fatalf("unknown task: %+v %v", e, err)
		}
		if e, err := h.c.HistoryPages(h.ctx, unknown, "", func([]dsat.Event) bool { t.Fatal("a page of an unknown task"); return false }); err != nil || e.Seq != 0 {
			t.Fatalf("unknown task: %+v %v", e, err)
		}
	})
}

// TestFinishedTaskKeysAreCompact (real Redis: miniredis has no OBJECT
// ENCODING, MEMORY USAGE or stream DUMP): a finished task's keys carry the
// retention TTL, its event stream is rewritten without the 4 KB Redis
// preallocates per stream node, and its hash is compactly encoded, also
// after long outputs of several end steps went through it.
func TestFinishedTaskKeysAreCompact(t *testing.T) {
	t.Parallel()
	b := redistest.Backends()[1]
	if !b.Real {
		t.Fatal("Backends()[1] is not redis-server")
	}
	long := `{"text":"` + strings.Repeat("x", 200) + `"}`
	for name, yaml := range map[string]string{"one end step": linearYAML, "two end steps": endsYAML} {
		t.Run(name, func(t *testing.T) {
			h := newHarness(t, b, yaml)
			id := h.submit(long)
			h.drain(nil)
			eq(t, "status", h.state(id).Status, dsat.StatusSucceeded)
			p := mustID(t, id).Partition
			for _, key := range []string{h.c.Keys().Task(p, id), h.c.Keys().TaskLog(p, id), h.c.Keys().TaskResult(p, id)} {
				if ttl := h.rdb.PTTL(h.ctx, key).Val(); ttl <= 0 {
					t.Fatalf("%s has no retention TTL (%v)", key, ttl)
				}
			}
			eq(t, "hash encoding", h.rdb.ObjectEncoding(h.ctx, h.c.Keys().Task(p, id)).Val(), "listpack")
			if n := h.rdb.MemoryUsage(h.ctx, h.c.Keys().TaskLog(p, id)).Val(); n <= 0 || n >= 4096 {
				t.Fatalf("event log uses %d bytes: not rewritten at its size", n)
			}
			h.checkInvariants(id)
		})
	}
}

// TestDelayedSubmission: a task submitted to run later exists at once
// (scheduled, INIT with run_at), its entry token reaches the entry step
// only when due (promote), and it then runs; cancelled before, it ends
// CANCELLED with no ACK.
func TestDelayedSubmission(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		runAt := h.now.Add(30 * time.Second)
		s, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{"x":1}`), dsat.SubmitOptions{RunAt: runAt})
		if err != nil {
			t.Fatal(err)
		}
		st := h.state(s.ID)
		if st.Status != dsat.StatusScheduled || st.RunAt == nil || !st.RunAt.Equal(runAt) {
			t.Fatalf("state %+v", st)
		}
		evs := h.events(s.ID)
		if len(evs) != 1 || evs[0].Event != dsat.EventInit || !strings.Contains(string(evs[0].Detail), fmt.Sprint(runAt.UnixMilli())) {
			t.Fatalf("events %v", evs)
		}
		if len(h.read("a")) != 0 {
			t.Fatal("the entry token of a scheduled task reached its step early")
		}
		if n, _ := h.c.Promote(h.ctx, h.p.Partition(0), 100); n != 0 {
			t.Fatalf("promoted %d tokens before their time", n)
		}
		h.advance(31 * time.Second)
		h.drain(nil)
		eq(t, "status", h.state(s.ID).Status, dsat.StatusSucceeded)
		eq(t, "events", names(h.events(s.ID)), []string{"INIT", "ACK:a", "END:a", "SEND:a", "ACK:b", "END:b", "SEND:b", "ACK:c", "END:c", "HAPPY_END"})
		h.checkInvariants(s.ID)

		// Cancelled before its time: CANCELLED, and no ACK ever.
		c, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), dsat.SubmitOptions{RunAt: h.now.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		if err := h.c.Cancel(h.ctx, c.ID, "changed my mind"); err != nil {
			t.Fatal(err)
		}
		h.advance(2 * time.Minute)
		h.drain(nil)
		eq(t, "cancelled events", names(h.events(c.ID)), []string{"INIT", "CANCELLED"})
		eq(t, "cancelled status", h.state(c.ID).Status, dsat.StatusCancelled)
		h.streamsEmpty()

		// A past run time runs at once; more than a year ahead is refused.
		p, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), dsat.SubmitOptions{RunAt: h.now.Add(-time.Hour)})
		if err != nil || h.state(p.ID).Status != dsat.StatusPending {
			t.Fatalf("past run time: %v %v", err, h.state(p.ID).Status)
		}
		if _, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), dsat.SubmitOptions{RunAt: h.now.Add(dsat.MaxDelay + time.Hour)}); !errors.Is(err, dsat.ErrInvalidDelay) {
			t.Fatalf("two years ahead: %v", err)
		}
	})
}
