package workers

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const breakerYAML = `
name: brk
version: 1.0.0
steps:
  call: {handler: call, retries: 0, concurrency: {min: 1, max: 1}, breaker: {failures: 3, within: 1m, open_for: 1s}}
`

// TestCircuitBreaker: a step failing every attempt opens after 3
// failures: nothing runs while it is open; after open_for one probe runs;
// a failed probe opens it again; a successful one closes it and the
// waiting tokens run.
func TestCircuitBreaker(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, breakerYAML)
		var runs atomic.Int32
		var healthy atomic.Bool
		m := NewMux()
		m.HandleFunc("call", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			runs.Add(1)
			if !healthy.Load() {
				return dsat.Result{}, errors.New("downstream is down")
			}
			return dsat.Result{Output: []byte(`{}`)}, nil
		})
		cfg := b.fast("s1")
		cfg.FlowInterval = 50 * time.Millisecond
		b.start(m, cfg)
		ids := b.submit(8, `{}`)
		waitRuns := func(n int32, within time.Duration) {
			t.Helper()
			deadline := time.Now().Add(within)
			for runs.Load() < n {
				if time.Now().After(deadline) {
					t.Fatalf("%d runs after %s, want %d", runs.Load(), within, n)
				}
				time.Sleep(10 * time.Millisecond)
			}
		}
		waitRuns(3, 5*time.Second)
		for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			states, err := b.c.Breakers(b.ctx)
			if st, ok := states["brk/call"]; err == nil && ok && st.State == dsat.BreakerOpen {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("breaker after 3 failures: %v %v", states, err)
			}
		}
		time.Sleep(600 * time.Millisecond)
		if n := runs.Load(); n != 3 {
			t.Fatalf("%d runs while the breaker was open, want 3", n)
		}
		waitRuns(4, 3*time.Second) // the probe, which fails
		time.Sleep(300 * time.Millisecond)
		if n := runs.Load(); n != 4 {
			t.Fatalf("%d runs after a failed probe, want 4 (open again)", n)
		}
		healthy.Store(true)
		sts := b.wait(ids, 10*time.Second)
		failed := 0
		for _, st := range sts {
			if st.Status == dsat.StatusFailed {
				failed++
			}
		}
		if failed != 4 || runs.Load() != 8 {
			t.Fatalf("%d failed, %d runs; want the 4 failed attempts and 8 runs", failed, runs.Load())
		}
		if states, _ := b.c.Breakers(b.ctx); len(states) != 0 {
			t.Fatalf("breaker not closed after a successful probe: %v", states)
		}
		// Every transition is a BREAKER event on the firehose, in order,
		// and counted for the metrics.
		var got []string
		entries, err := b.c.FirehoseRange(b.ctx, b.p.Partition(0), "0-0", 10000)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range entries {
			for _, e := range m.Events {
				if e.Event != dsat.EventBreaker {
					continue
				}
				var d dsat.BreakerDetail
				if err := json.Unmarshal(e.Detail, &d); err != nil || e.Task != "" || e.Pipeline != "brk" || e.Step != "call" || e.Worker != "s1" ||
					(d.Until == nil) != (d.State == dsat.BreakerClosed) {
					t.Fatalf("BREAKER event %+v (%v)", e, err)
				}
				got = append(got, d.State)
			}
		}
		if strings.Join(got, ",") != "open,half_open,open,half_open,closed" {
			t.Fatalf("BREAKER events %v", got)
		}
		moves, err := b.c.BreakerTransitions(b.ctx)
		if want := map[string]int64{"open": 2, "half_open": 2, "closed": 1}; err != nil || !maps.Equal(moves["brk/call"], want) {
			t.Fatalf("transitions %v %v, want %v", moves, err, want)
		}
	})
}
