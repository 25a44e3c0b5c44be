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
	t.Parallel() // its checks count from the breaker's own until, not from when the test looks
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
		// staysOpen waits for the breaker to be open until later than
		// after, then checks that nothing runs (runs stays at want) until
		// shortly before that time, whenever the test saw it open (a
		// fixed sleep from that moment could reach past open_for on a
		// loaded machine). It returns the breaker's until.
		staysOpen := func(after time.Time, want int32, what string) time.Time {
			t.Helper()
			var until time.Time
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
				states, err := b.c.Breakers(b.ctx)
				if st, ok := states["brk/call"]; err == nil && ok && st.State == dsat.BreakerOpen && st.Until.After(after) {
					until = st.Until.Time
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("breaker %s: %v %v", what, states, err)
				}
			}
			for time.Now().Before(until.Add(-100 * time.Millisecond)) {
				if n := runs.Load(); n != want {
					t.Fatalf("%d runs while the breaker was open (%s), want %d", n, what, want)
				}
				time.Sleep(10 * time.Millisecond)
			}
			return until
		}
		waitRuns(3, 5*time.Second)
		until := staysOpen(time.Time{}, 3, "after 3 failures")
		waitRuns(4, 3*time.Second) // the probe, which fails
		staysOpen(until, 4, "after a failed probe")
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
