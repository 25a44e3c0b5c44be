package dsat_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const queueTimeoutYAML = `
name: qt
version: 1.0.0
steps:
  a: {handler: echo, next: [b], queue_timeout: 2s, retries: 1, backoff: {initial: 1s, max: 1s}}
  b: {handler: echo}
`

// realClock puts the harness clock at the real time: stream entry ids carry
// Redis's clock, which queue timeouts compare with.
func (h *harness) realClock() {
	h.mu.Lock()
	h.now = time.Now()
	h.mu.Unlock()
}

// TestQueueTimeout: a token no worker read within its step's
// queue_timeout gets TIMEOUT (no ACK), then a retry; past its attempts the
// task fails. A token a worker read is not touched.
func TestQueueTimeout(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, queueTimeoutYAML)
		h.realClock()
		part := h.p.Partition(0)
		id := h.submit(`{"n":1}`)
		if n, _, _, err := h.c.TimeoutQueued(h.ctx, part, "a", 100); err != nil || n != 0 {
			t.Fatalf("timed out %d (%v) before the queue timeout", n, err)
		}
		h.advance(3 * time.Second)
		n, dead, more, err := h.c.TimeoutQueued(h.ctx, part, "a", 100)
		if err != nil || n != 1 || dead != 0 || more {
			t.Fatalf("timed out %d (dead %d), more %v, err %v; want 1, none dead", n, dead, more, err)
		}
		eq(t, "events", names(h.events(id)), []string{"INIT", "TIMEOUT:a", "RETRY:a"})
		st := h.state(id)
		eq(t, "status", st.Status, dsat.StatusPending) // never ran: no ACK, still pending
		if !strings.Contains(st.Steps["a"].Error, "queue_timeout of 2s") {
			t.Fatalf("step error %q", st.Steps["a"].Error)
		}
		if len(h.read("a")) != 0 {
			t.Fatal("the timed-out entry is still in the stream")
		}
		// Twice is harmless: nothing left to time out.
		if n, _, _, _ := h.c.TimeoutQueued(h.ctx, part, "a", 100); n != 0 {
			t.Fatalf("timed out %d again", n)
		}

		// The retry is promoted, waits past the timeout again, and that was
		// its last attempt: the task fails.
		h.advance(2 * time.Second)
		if moved, err := h.c.Promote(h.ctx, part, 100); err != nil || moved != 1 {
			t.Fatalf("promoted %d (%v)", moved, err)
		}
		h.advance(3 * time.Second)
		if n, dead, _, err := h.c.TimeoutQueued(h.ctx, part, "a", 100); err != nil || n != 1 || dead != 1 {
			t.Fatalf("second attempt: timed out %d, dead %d (%v); want 1 dead", n, dead, err)
		}
		eq(t, "events", names(h.events(id)), []string{"INIT", "TIMEOUT:a", "RETRY:a", "TIMEOUT:a", "DEAD"})
		eq(t, "status", h.state(id).Status, dsat.StatusFailed)
		h.checkInvariants(id)

		// A token read by a worker is that worker's: the time keeper
		// neither finds it nor, racing with the read, touches it.
		h.realClock()
		id2 := h.submit(`{"n":2}`)
		ds := h.read("a")
		if len(ds) != 1 {
			t.Fatalf("read %d tokens", len(ds))
		}
		h.advance(3 * time.Second)
		if n, _, _, _ := h.c.TimeoutQueued(h.ctx, part, "a", 100); n != 0 {
			t.Fatalf("timed out %d delivered tokens", n)
		}
		f := dsat.UndeliveredForTest(dsat.Failure{Timeout: true, NotRun: true, Message: "late"})
		if o, _, err := h.c.Fail(h.ctx, ds[0], f); err != nil || o != dsat.Dropped {
			t.Fatalf("time keeper's fail of a delivered token: %v %v", o, err)
		}
		eq(t, "events", names(h.events(id2)), []string{"INIT"})
		h.lazy, h.started = true, h.clock()
		h.run(ds[0], echo)
		h.drain(nil)
		eq(t, "status", h.state(id2).Status, dsat.StatusSucceeded)
		h.checkInvariants(id2)

		// A worker that read a token too late fails it itself: no ACK.
		h.realClock()
		id3 := h.submit(`{"n":3}`)
		ds = h.read("a")
		if _, _, err := h.c.Fail(h.ctx, ds[0], dsat.Failure{Timeout: true, NotRun: true, Message: "late"}); err != nil {
			t.Fatal(err)
		}
		eq(t, "events", names(h.events(id3)), []string{"INIT", "TIMEOUT:a", "RETRY:a"})

		// A step without a queue_timeout has none.
		if n, _, more, err := h.c.TimeoutQueued(h.ctx, part, "b", 100); n != 0 || more || err != nil {
			t.Fatalf("step b: %d %v %v", n, more, err)
		}
	})
}

// TestTaskDeadline: a task past its deadline is cancelled with the reason
// "deadline"; its running token's result is then dropped. A task that
// ended before only leaves the deadline set. Bad deadlines are refused.
func TestTaskDeadline(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		part := h.p.Partition(0)
		dl := h.now.Add(time.Minute)
		s, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), dsat.SubmitOptions{Deadline: dl})
		if err != nil {
			t.Fatal(err)
		}
		if st := h.state(s.ID); st.Deadline == nil || !st.Deadline.Equal(dl) {
			t.Fatalf("state deadline %v, want %v", st.Deadline, dl)
		}
		if n, more, err := h.c.CancelOverdue(h.ctx, part, 100); n != 0 || more || err != nil {
			t.Fatalf("cancelled %d before the deadline (%v)", n, err)
		}
		ds := h.read("a") // a worker holds its token
		h.advance(61 * time.Second)
		if n, _, err := h.c.CancelOverdue(h.ctx, part, 100); n != 1 || err != nil {
			t.Fatalf("cancelled %d (%v), want 1", n, err)
		}
		evs := h.events(s.ID)
		eq(t, "events", names(evs), []string{"INIT", "CANCELLED"})
		if !strings.Contains(string(evs[1].Detail), `"reason":"deadline"`) {
			t.Fatalf("CANCELLED detail %s", evs[1].Detail)
		}
		eq(t, "status", h.state(s.ID).Status, dsat.StatusCancelled)
		h.lazy, h.started = true, h.clock()
		if o, err := h.c.Complete(h.ctx, ds[0], []byte(`{}`), ""); err != nil || o != dsat.Dropped {
			t.Fatalf("complete after the deadline: %v %v", o, err)
		}
		if n, _, _ := h.c.CancelOverdue(h.ctx, part, 100); n != 0 {
			t.Fatalf("cancelled %d again", n)
		}

		// Ended in time: it only leaves the set once its deadline passes.
		ids, err := h.c.SubmitBatch(h.ctx, h.p.Name, [][]byte{[]byte(`{}`), []byte(`{}`)}, dsat.SubmitOptions{Deadline: h.now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		h.drain(nil)
		for _, id := range ids {
			eq(t, "status", h.state(id).Status, dsat.StatusSucceeded)
		}
		if card := h.rdb.ZCard(h.ctx, h.c.Keys().Deadlines(part)).Val(); card != 2 {
			t.Fatalf("deadline set holds %d, want 2", card)
		}
		if n, _, _ := h.c.CancelOverdue(h.ctx, part, 100); n != 0 {
			t.Fatalf("cancelled %d finished tasks", n)
		}
		if card := h.rdb.ZCard(h.ctx, h.c.Keys().Deadlines(part)).Val(); card != 2 {
			t.Fatalf("deadline set holds %d before the deadline, want 2", card)
		}
		h.advance(2 * time.Hour)
		if n, _, _ := h.c.CancelOverdue(h.ctx, part, 100); n != 0 {
			t.Fatalf("cancelled %d finished tasks", n)
		}
		if card := h.rdb.ZCard(h.ctx, h.c.Keys().Deadlines(part)).Val(); card != 0 {
			t.Fatalf("deadline set holds %d after the sweep, want 0", card)
		}
		for _, id := range ids {
			eq(t, "status", h.state(id).Status, dsat.StatusSucceeded)
			h.checkInvariants(id)
		}

		// Refused: a past deadline, one more than a year ahead, one not
		// after the run time.
		for name, o := range map[string]dsat.SubmitOptions{
			"past":          {Deadline: h.now.Add(-time.Second)},
			"too far":       {Deadline: h.now.Add(dsat.MaxDelay + time.Hour)},
			"before run_at": {RunAt: h.now.Add(time.Hour), Deadline: h.now.Add(time.Minute)},
		} {
			if _, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), o); !errors.Is(err, dsat.ErrInvalidDeadline) {
				t.Fatalf("%s: %v, want ErrInvalidDeadline", name, err)
			}
		}
	})
}
