package workers

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const flowYAML = `
name: flow
version: 1.0.0
steps:
  a: {handler: fast, next: [b], concurrency: {min: 4, max: 4}}
  b: {handler: slow, max_backlog: 10, concurrency: {min: 1, max: 1}}
`

// TestPauseHoldsStep: after a step is paused no token of it is begun —
// the tokens wait, the step before it goes on — and after resume they
// all run.
func TestPauseHoldsStep(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, flowYAML)
		var runsB atomic.Int32
		m := NewMux()
		m.HandleFunc("fast", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		m.HandleFunc("slow", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			runsB.Add(1)
			return dsat.Result{Output: task.Payload}, nil
		})
		if err := b.c.Pause(b.ctx, "flow", "b"); err != nil {
			t.Fatal(err)
		}
		cfg := b.fast("s1")
		cfg.FlowInterval = 50 * time.Millisecond
		b.start(m, cfg)
		ids := b.submit(5, `{}`)
		b.waitBacklog("b", 5, 15*time.Second, "step a did not go on while b was paused") // 15s: a loaded machine
		time.Sleep(300 * time.Millisecond)
		if n := runsB.Load(); n != 0 {
			t.Fatalf("a paused step ran %d tokens", n)
		}
		if err := b.c.Resume(b.ctx, "flow", "b"); err != nil {
			t.Fatal(err)
		}
		for _, st := range b.wait(ids, 5*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("after resume: %+v", st)
			}
		}
	})
}

// TestBackpressure: a fast step feeding a slow one with max_backlog 10
// keeps the slow step's backlog at most 10 plus the fast step's pool (its
// tokens in flight), and every task gets through: b never stops running
// tokens while some wait.
//
// The time bound counts from b's last run, not from the submission: b's
// backlog stays at about max_backlog however slowly b runs. Alone the test
// drains in about a second; in the whole workers suite under -race, on a
// shared machine, b on miniredis ran 2-3 tokens a second, without a pause
// (its backlog 7 to 12 once full), and a bound of 20 s from the
// submission failed 2 runs of 8, with 50 and 57 of the 100 run at b.
func TestBackpressure(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, flowYAML)
		var runsB atomic.Int64
		m := NewMux()
		m.HandleFunc("fast", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		m.HandleFunc("slow", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			runsB.Add(1)
			time.Sleep(2 * time.Millisecond)
			return dsat.Result{Output: task.Payload}, nil
		})
		b.start(m, b.fast("s1"))
		ids, err := b.c.SubmitBatch(b.ctx, "flow", manyPayloads())
		if err != nil {
			t.Fatal(err)
		}
		const stuckAfter = 10 * time.Second
		var peak int64
		runs, ranAt, giveUp := int64(0), time.Now(), time.Now().Add(2*time.Minute)
		for done := false; !done; {
			n, err := b.c.Backlog(b.ctx, b.p, "b")
			if err != nil {
				t.Fatal(err)
			}
			peak = max(peak, n)
			a, _ := b.c.Backlog(b.ctx, b.p, "a")
			done = a == 0 && n == 0
			if r := runsB.Load(); r != runs {
				runs, ranAt = r, time.Now()
			}
			if !done && time.Since(ranAt) > stuckAfter {
				t.Fatalf("stuck: no token of b ran for %s (b's backlog %d, a's %d; b ran %d tokens)", stuckAfter, n, a, runs)
			}
			if !done && time.Now().After(giveUp) {
				t.Fatalf("not drained after 2m although b runs (b's backlog %d, a's %d; b ran %d tokens)", n, a, runs)
			}
			time.Sleep(2 * time.Millisecond)
		}
		if limit := int64(10 + 4); peak > limit || peak < 5 {
			t.Fatalf("b's backlog peaked at %d; want at most %d (max_backlog + a's pool), and the limit reached", peak, limit)
		}
		for _, st := range b.wait(ids, 10*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("task %+v", st)
			}
		}
	})
}

func manyPayloads() [][]byte {
	out := make([][]byte, 100)
	for i := range out {
		out[i] = []byte(`{}`)
	}
	return out
}
