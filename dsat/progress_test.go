package dsat_test

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

func TestProgress(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		t.Run("begun", func(t *testing.T) {
			h := newHarness(t, b, linearYAML)
			id := h.submit(`{}`)
			d := h.read("a")[0]
			mustOutcome(t, "begin", dsat.Applied)(h.c.Begin(h.ctx, d))
			h.advance(time.Second)
			mustOutcome(t, "progress", dsat.Applied)(h.c.Progress(h.ctx, d, 0.4, "11/54 pages"))
			h.advance(time.Second)
			// A message past 64 bytes takes the hash out of its compact
			// encoding while the step runs; it gets it back when it ends.
			msg := "27/54 | pages " + strings.Repeat("x", 100)
			mustOutcome(t, "progress", dsat.Applied)(h.c.Progress(h.ctx, d, 0.5, msg))
			st := h.state(id)
			p := st.Steps["a"].Progress
			if p == nil || p.Value != 0.5 || p.Message != msg || !p.At.Equal(h.now) {
				t.Fatalf("progress in state: %+v (now %v)", p, h.now)
			}
			evs := h.events(id)
			eq(t, "events", names(evs), []string{"INIT", "ACK:a", "PROGRESS:a", "PROGRESS:a"})
			jsonEq(t, "detail", evs[2].Detail, `{"progress":0.4,"message":"11/54 pages"}`)
			eq(t, "attempt, worker", []any{evs[2].Attempt, evs[2].Worker}, []any{1, h.worker})
			mustOutcome(t, "complete", dsat.Applied)(h.c.Complete(h.ctx, d, []byte(`1`), ""))
			if p := h.state(id).Steps["a"].Progress; p != nil {
				t.Fatalf("a done step keeps its progress: %+v", p)
			}
			mustOutcome(t, "progress after complete", dsat.Dropped)(h.c.Progress(h.ctx, d, 0.9, ""))
			h.drain(nil)
			eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a", "PROGRESS:a", "PROGRESS:a", "END:a", "SEND:a",
				"ACK:b", "END:b", "SEND:b", "ACK:c", "END:c", "HAPPY_END"})
			h.checkInvariants(id)
			h.streamsEmpty()
			if b.Real {
				tid, _ := dsat.ParseTaskID(id)
				if enc := h.rdb.ObjectEncoding(h.ctx, h.c.Keys().Task(tid.Partition, id)).Val(); enc != "listpack" {
					t.Fatalf("finished task hash encoding %s", enc)
				}
			}
		})
		t.Run("not begun", func(t *testing.T) {
			// The lazy begin: a handler reports progress inside its begin
			// window. The ACK is written first (at its start), and the
			// satellite's later Begin and Complete still work.
			h := newHarness(t, b, linearYAML)
			id := h.submit(`{}`)
			d := h.read("a")[0]
			d.Started = h.now
			h.advance(time.Second)
			mustOutcome(t, "progress", dsat.Applied)(h.c.Progress(h.ctx, d, 0.25, "a quarter"))
			evs := h.events(id)
			eq(t, "events", names(evs), []string{"INIT", "ACK:a", "PROGRESS:a"})
			if !evs[1].At.Equal(d.Started) {
				t.Fatalf("late ACK at %v, want the handler's start %v", evs[1].At, d.Started)
			}
			eq(t, "status", h.state(id).Status, dsat.StatusRunning)
			eq(t, "step state", h.state(id).Steps["a"].State, "running")
			mustOutcome(t, "begin after progress", dsat.AlreadyApplied)(h.c.Begin(h.ctx, d))
			mustOutcome(t, "complete", dsat.Applied)(h.c.Complete(h.ctx, d, []byte(`1`), ""))
			mustOutcome(t, "complete again", dsat.AlreadyApplied)(h.c.Complete(h.ctx, d, []byte(`1`), ""))
			eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a", "PROGRESS:a", "END:a", "SEND:a"})
			h.drain(nil)
			h.checkInvariants(id)
			h.streamsEmpty()
		})
		t.Run("not begun, then fails", func(t *testing.T) {
			h := newHarness(t, b, linearYAML)
			id := h.submit(`{}`)
			d := h.read("a")[0]
			d.Started = h.now
			mustOutcome(t, "progress", dsat.Applied)(h.c.Progress(h.ctx, d, 0.25, ""))
			mustOutcome(t, "fail", dsat.Applied)(func() (dsat.Outcome, error) {
				o, _, err := h.c.Fail(h.ctx, d, dsat.Failure{Message: "boom"})
				return o, err
			}())
			eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a", "PROGRESS:a", "ERROR:a", "RETRY:a"})
			h.checkInvariants(id)
		})
		t.Run("not live", func(t *testing.T) {
			h := newHarness(t, b, linearYAML)
			id := h.submit(`{}`)
			d := h.read("a")[0]
			mustOutcome(t, "begin", dsat.Applied)(h.c.Begin(h.ctx, d))
			other := d
			other.Worker = "sat2-w1"
			mustOutcome(t, "another worker", dsat.Dropped)(h.c.Progress(h.ctx, other, 0.1, ""))
			stale := d
			stale.Attempt = 2
			mustOutcome(t, "another attempt", dsat.Dropped)(h.c.Progress(h.ctx, stale, 0.1, ""))
			wrong := d
			wrong.Step = "b"
			mustOutcome(t, "another step", dsat.Dropped)(h.c.Progress(h.ctx, wrong, 0.1, ""))
			if _, err := h.c.Progress(h.ctx, d, math.NaN(), ""); !errors.Is(err, dsat.ErrBadProgress) {
				t.Fatalf("NaN: %v", err)
			}
			if _, err := h.c.Progress(h.ctx, d, math.Inf(1), ""); !errors.Is(err, dsat.ErrBadProgress) {
				t.Fatalf("Inf: %v", err)
			}
			eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a"})
			if err := h.c.Cancel(h.ctx, id, ""); err != nil {
				t.Fatal(err)
			}
			mustOutcome(t, "cancelled", dsat.Dropped)(h.c.Progress(h.ctx, d, 0.1, ""))
			eq(t, "events", names(h.events(id)), []string{"INIT", "ACK:a", "CANCELLED"})
			h.checkInvariants(id)
		})
		t.Run("clean", func(t *testing.T) {
			h := newHarness(t, b, linearYAML)
			id := h.submit(`{}`)
			d := h.read("a")[0]
			mustOutcome(t, "begin", dsat.Applied)(h.c.Begin(h.ctx, d))
			long := strings.Repeat("é", 200) // 400 bytes
			mustOutcome(t, "progress", dsat.Applied)(h.c.Progress(h.ctx, d, 1.5, long+"\xff"))
			p := h.state(id).Steps["a"].Progress
			if p.Value != 1 || len(p.Message) != 256 || p.Message != strings.Repeat("é", 128) {
				t.Fatalf("cleaned progress: %v %d %q", p.Value, len(p.Message), p.Message)
			}
			mustOutcome(t, "progress", dsat.Applied)(h.c.Progress(h.ctx, d, -3, "bad \xff byte\nline"))
			evs := h.events(id)
			jsonEq(t, "detail", evs[len(evs)-1].Detail, `{"progress":0,"message":"bad \ufffd byte\nline"}`)
			h.checkInvariants(id)
		})
	})
}
