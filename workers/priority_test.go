package workers

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const prioYAML = `
name: prio
version: 1.0.0
steps:
  a: {handler: rec, next: [b], concurrency: {min: 1, max: 1}}
  b: {handler: rec, concurrency: {min: 1, max: 1}}
`

// TestSatellitePriorities (issue 16): with 30 low tasks, then 5 high ones
// waiting, a satellite with one slot per step begins the 5 high ones
// first, at both steps, and every task finishes, also a high task
// submitted while it runs.
//
// Step b is paused until all of a's tokens wait there: tokens that trickle
// into a step meet its reader's round robin wherever it stands (its reads
// that found nothing took their turns too), so one read in 10, low's, may
// begin a low token while high ones wait (README: priorities). Held, b's
// reader reads nothing: its first read is the round robin's first.
func TestSatellitePriorities(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, prioYAML)
		var mu sync.Mutex
		order := map[string][]string{} // step -> payloads in the order begun
		gate := make(chan struct{})
		m := NewMux()
		m.HandleFunc("rec", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			<-gate
			mu.Lock()
			order[task.Step] = append(order[task.Step], string(task.Payload))
			mu.Unlock()
			return dsat.Result{Output: task.Payload}, nil
		})
		var ids []string
		submit := func(n int, level dsat.Priority) {
			for i := 0; i < n; i++ {
				s, err := b.c.Submit(b.ctx, b.p.Name, []byte(`"`+level.String()+`"`), dsat.SubmitOptions{Priority: level})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, s.ID)
			}
		}
		submit(30, dsat.PriorityLow)
		submit(5, dsat.PriorityHigh)
		if err := b.c.Pause(b.ctx, b.p.Name, "b"); err != nil {
			t.Fatal(err)
		}
		cfg := b.fast("s1")
		cfg.FlowInterval = 50 * time.Millisecond
		cfg.ReadBatch = 1
		b.start(m, cfg)
		close(gate)
		time.Sleep(100 * time.Millisecond)
		submit(1, dsat.PriorityHigh)
		b.waitBacklog("b", 36, 30*time.Second, "step a did not send its 36 tokens to the paused b")
		if err := b.c.Resume(b.ctx, b.p.Name, "b"); err != nil {
			t.Fatal(err)
		}
		for _, st := range b.wait(ids, 30*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("task: %+v", st)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, step := range []string{"a", "b"} {
			got := order[step]
			if len(got) != 36 {
				t.Fatalf("step %s ran %d tokens, want 36", step, len(got))
			}
			for i, p := range got[:5] {
				if p != `"high"` {
					t.Fatalf("step %s: token %d begun was %s, want the 5 high ones first: %v", step, i, p, got)
				}
			}
		}
		// The late high task ran at a.
		late := -1
		for i, p := range order["a"][5:] {
			if p == `"high"` {
				late = i + 5
			}
		}
		if late < 0 {
			t.Fatalf("the high task submitted while low ones waited began at %d of 36: %v", late, order["a"])
		}
	})
}

// TestPrioritiesWithLimits (issue 16): high and low tokens parked by a
// step's running limit are kept (their claims renewed in their own level's
// stream) and each runs once.
func TestPrioritiesWithLimits(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: plim
version: 1.0.0
steps:
  a: {handler: rec, limits: {running: 1}, concurrency: {min: 4, max: 4}}
`)
		var mu sync.Mutex
		runs := map[string]int{}
		m := NewMux()
		m.HandleFunc("rec", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			time.Sleep(20 * time.Millisecond)
			mu.Lock()
			runs[task.ID]++
			mu.Unlock()
			return dsat.Result{Output: task.Payload}, nil
		})
		var ids []string
		for _, level := range []dsat.Priority{dsat.PriorityLow, dsat.PriorityHigh, dsat.PriorityNormal} {
			for i := 0; i < 8; i++ {
				s, err := b.c.Submit(b.ctx, b.p.Name, []byte(`{}`), dsat.SubmitOptions{Priority: level})
				if err != nil {
					t.Fatal(err)
				}
				ids = append(ids, s.ID)
			}
		}
		cfg := b.fast("s1")
		cfg.FlowInterval = 50 * time.Millisecond
		b.start(m, cfg)
		for _, st := range b.wait(ids, 30*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("task: %+v", st)
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for _, id := range ids {
			if runs[id] != 1 {
				t.Fatalf("task %s ran %d times, want 1", id, runs[id])
			}
		}
	})
}
