package dsat_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// harness drives tokens through the engine the way a satellite does (read
// with XREADGROUP, Begin, handler, Complete or Fail), synchronously, so the
// contract tests can check every state change.
type harness struct {
	t      *testing.T
	ctx    context.Context
	rdb    redis.UniversalClient
	mini   *miniredis.Miniredis
	real   bool
	c      *dsat.Client
	p      *dsat.Pipeline
	mu     sync.Mutex
	now    time.Time
	worker string
	// runs counts handler runs per step.
	runs map[string]int
	// lazy runs handlers without a Begin call, as a satellite does for a
	// handler that returns within its begin window: Complete and Fail
	// record the ACK, at started.
	lazy    bool
	started time.Time
}

// handlerFunc is a test handler: it returns an output and a route label,
// or a failure.
type handlerFunc func(d dsat.Delivery) ([]byte, string, *dsat.Failure)

func newHarness(t *testing.T, b redistest.Backend, yaml string) *harness {
	t.Helper()
	rdb, mini := b.New(t)
	p, err := dsat.ParsePipeline("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("parse pipeline: %v", err)
	}
	h := &harness{t: t, ctx: context.Background(), rdb: rdb, mini: mini, real: b.Real, p: p,
		now: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), worker: "sat1-w1", runs: map[string]int{}}
	h.c, err = dsat.NewClient(rdb, dsat.Config{Now: h.clock, FirehoseMaxLen: 1000}, p)
	if err != nil {
		t.Fatal(err)
	}
	for n := 0; n < p.Partitions; n++ {
		for _, s := range p.Order {
			key := h.c.Keys().Step(p.Partition(n), s)
			if err := rdb.XGroupCreateMkStream(h.ctx, key, s, "0").Err(); err != nil {
				t.Fatalf("create group: %v", err)
			}
		}
	}
	return h
}

func (h *harness) clock() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.now
}

func (h *harness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

func (h *harness) submit(payload string) string {
	h.t.Helper()
	s, err := h.c.Submit(h.ctx, h.p.Name, []byte(payload), dsat.SubmitOptions{})
	if err != nil {
		h.t.Fatalf("submit: %v", err)
	}
	return s.ID
}

// read returns the next deliveries of one step (new entries only).
func (h *harness) read(step string) []dsat.Delivery {
	h.t.Helper()
	var out []dsat.Delivery
	for n := 0; n < h.p.Partitions; n++ {
		part := h.p.Partition(n)
		res, err := h.rdb.XReadGroup(h.ctx, &redis.XReadGroupArgs{
			Group: step, Consumer: h.worker, Streams: []string{h.c.Keys().Step(part, step), ">"}, Count: 100, Block: -1,
		}).Result()
		if errors.Is(err, redis.Nil) {
			continue
		}
		if err != nil {
			h.t.Fatalf("xreadgroup %s: %v", step, err)
		}
		for _, m := range res[0].Messages {
			env, err := dsat.ParseEnvelope(m.Values, 0)
			if err != nil {
				if err := h.c.DeadLetterEntry(h.ctx, part, step, m.ID, m.Values, err.Error(), h.worker); err != nil {
					h.t.Fatalf("dead-letter entry: %v", err)
				}
				continue
			}
			out = append(out, dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: h.worker})
		}
	}
	return out
}

// run processes one delivery with handler f.
func (h *harness) run(d dsat.Delivery, f handlerFunc) {
	h.t.Helper()
	var err error
	if h.lazy {
		d.Started = h.started
	} else {
		o, err := h.c.Begin(h.ctx, d)
		if err != nil {
			h.t.Fatalf("begin: %v", err)
		}
		if o == dsat.Dropped {
			return
		}
	}
	h.runs[d.Step]++
	out, label, fail := f(d)
	if fail == nil {
		_, err = h.c.Complete(h.ctx, d, out, label)
		if errors.Is(err, dsat.ErrNoRoute) || errors.Is(err, dsat.ErrMapOutput) {
			fail = &dsat.Failure{Message: err.Error(), Final: true}
		} else if err != nil {
			h.t.Fatalf("complete: %v", err)
		}
	}
	if fail != nil {
		if _, _, err := h.c.Fail(h.ctx, d, *fail); err != nil {
			h.t.Fatalf("fail: %v", err)
		}
	}
}

// drain runs handlers until no token is queued or waiting for a retry;
// it moves the clock forward to make retries due.
func (h *harness) drain(handlers map[string]handlerFunc) {
	h.t.Helper()
	for round := 0; round < 200; round++ {
		worked := false
		for _, s := range h.p.Order {
			if h.p.Steps[s].Pipeline != "" {
				continue // a sub-pipeline step: startChildren (subpipe_test.go)
			}
			for _, d := range h.read(s) {
				f := handlers[s]
				if f == nil {
					f = echo
				}
				h.run(d, f)
				worked = true
			}
		}
		h.advance(10 * time.Minute)
		for n := 0; n < h.p.Partitions; n++ {
			moved, err := h.c.Promote(h.ctx, h.p.Partition(n), 100)
			if err != nil {
				h.t.Fatalf("promote: %v", err)
			}
			worked = worked || moved > 0
		}
		if !worked {
			return
		}
	}
	h.t.Fatal("drain did not settle after 200 rounds")
}

// echo outputs {"step": name, "in": input}.
func echo(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
	return []byte(fmt.Sprintf(`{"step":%q,"in":%s}`, d.Step, d.Payload)), "", nil
}

func (h *harness) state(id string) *dsat.TaskState {
	h.t.Helper()
	st, err := h.c.Get(h.ctx, id)
	if err != nil {
		h.t.Fatalf("get %s: %v", id, err)
	}
	return st
}

func (h *harness) events(id string) []dsat.Event {
	h.t.Helper()
	evs, err := h.c.History(h.ctx, id, "", 0)
	if err != nil {
		h.t.Fatalf("history: %v", err)
	}
	return evs
}

// names returns "EVENT:step" for each event ("EVENT" for task events).
func names(evs []dsat.Event) []string {
	out := make([]string, len(evs))
	for i, e := range evs {
		out[i] = e.Event
		if e.Step != "" {
			out[i] += ":" + e.Step
		}
	}
	return out
}

// checkInvariants checks what must hold for every task: events numbered
// 1..n without gap, the same in the task stream and the firehose, the hash
// agreeing with the events, and at most one final event per (re-)drive.
func (h *harness) checkInvariants(id string) {
	h.t.Helper()
	st := h.state(id)
	evs := h.events(id)
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			h.t.Fatalf("task %s: event %d has seq %d (events %v)", id, i, e.Seq, names(evs))
		}
		if e.Task != id || e.Pipeline != h.p.Name {
			h.t.Fatalf("event %d names task %q pipeline %q", i, e.Task, e.Pipeline)
		}
		if !json.Valid(e.Detail) {
			h.t.Fatalf("event %d detail is not JSON: %s", i, e.Detail)
		}
	}
	if st.Seq != int64(len(evs)) {
		h.t.Fatalf("state seq %d, %d events", st.Seq, len(evs))
	}
	// Resuming after any event's seq gives exactly the events that follow
	// it, also when read in pages of one.
	for i, e := range evs {
		if e.ID != fmt.Sprint(e.Seq) {
			h.t.Fatalf("task %s: history event %d has id %q", id, i, e.ID)
		}
		rest, err := h.c.History(h.ctx, id, e.ID, 0)
		if err != nil {
			h.t.Fatal(err)
		}
		if fmt.Sprint(rest) != fmt.Sprint(evs[i+1:]) {
			h.t.Fatalf("task %s: events after %s:\n%v\nwant\n%v", id, e.ID, names(rest), names(evs[i+1:]))
		}
		if page, err := h.c.History(h.ctx, id, e.ID, 1); err != nil || len(evs) > i+1 && (len(page) != 1 || page[0].ID != evs[i+1].ID) {
			h.t.Fatalf("task %s: page after %s: %v %v", id, e.ID, page, err)
		}
	}
	if len(evs) > 0 && !st.UpdatedAt.Equal(evs[len(evs)-1].At.Time) {
		h.t.Fatalf("updated_at %v, last event at %v", st.UpdatedAt, evs[len(evs)-1].At)
	}
	// The firehose holds the same events, in the same order.
	tid, _ := dsat.ParseTaskID(id)
	fh, err := h.rdb.XRange(h.ctx, h.c.Keys().Firehose(tid.Partition), "-", "+").Result()
	if err != nil {
		h.t.Fatal(err)
	}
	var mine []dsat.Event
	for _, m := range fh {
		fevs, err := dsat.ParseEntry(m)
		if err != nil {
			h.t.Fatal(err)
		}
		for _, e := range fevs {
			if e.Task == id {
				e.ID = fmt.Sprint(e.Seq)
				mine = append(mine, e)
			}
		}
	}
	if fmt.Sprint(mine) != fmt.Sprint(evs) {
		h.t.Fatalf("firehose and task log differ:\n%v\n%v", mine, evs)
	}
	// One final event per drive; the last one decides the status.
	finals := 0
	want := map[string]string{dsat.EventHappyEnd: dsat.StatusSucceeded, dsat.EventDead: dsat.StatusFailed, dsat.EventCancelled: dsat.StatusCancelled}
	last := ""
	for _, e := range evs {
		if dsat.FinalEvent(e.Event) {
			finals++
			last = e.Event
		}
		if e.Event == dsat.EventRetry && e.Step == "" {
			finals-- // a re-drive opens a new run
		}
	}
	if finals > 1 {
		h.t.Fatalf("task %s has %d final events: %v", id, finals, names(evs))
	}
	if dsat.Final(st.Status) && finals == 1 && want[last] != st.Status {
		h.t.Fatalf("status %s but last final event %s", st.Status, last)
	}
}

// streamsEmpty checks that no step stream holds an entry or a pending one.
func (h *harness) streamsEmpty() {
	h.t.Helper()
	for n := 0; n < h.p.Partitions; n++ {
		for _, s := range h.p.Order {
			key := h.c.Keys().Step(h.p.Partition(n), s)
			if l := h.rdb.XLen(h.ctx, key).Val(); l != 0 {
				h.t.Fatalf("stream %s still holds %d entries", key, l)
			}
			pend, err := h.rdb.XPending(h.ctx, key, s).Result()
			if err != nil {
				h.t.Fatal(err)
			}
			if pend.Count != 0 {
				h.t.Fatalf("stream %s has %d pending entries", key, pend.Count)
			}
		}
	}
}

func eq(t *testing.T, what string, got, want any) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("%s:\n got  %v\n want %v", what, got, want)
	}
}

func jsonEq(t *testing.T, what string, got []byte, want string) {
	t.Helper()
	var a, b any
	if err := json.Unmarshal(got, &a); err != nil {
		t.Fatalf("%s: not JSON: %s", what, got)
	}
	if err := json.Unmarshal([]byte(want), &b); err != nil {
		t.Fatalf("%s: bad want: %s", what, want)
	}
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Fatalf("%s:\n got  %s\n want %s", what, got, want)
	}
}
