package workers

import (
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const statsYAML = `
name: st
version: 1.0.0
steps:
  a: {handler: sleep, with: {ms: 20}, next: [b]}
  b: {handler: fail, with: {attempts: 1}, retries: 0}
`

// TestStepStats: a satellite records each step's ended tokens, failed
// attempts, dead tokens and latencies, and Stats reads them back.
func TestStepStats(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, statsYAML)
		m := NewMux()
		RegisterBuiltins(m, 0)
		cfg := b.fast("s1")
		cfg.StatsInterval = 50 * time.Millisecond
		b.start(m, cfg)
		b.wait(b.submit(10, `{}`), 10*time.Second)
		var st *dsat.PipelineStats
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			var err error
			st, err = b.c.Stats(b.ctx, "st", time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			if st.Steps["a"].Totals.Ended == 10 && st.Steps["b"].Totals.Dead == 10 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("stats after 10 tasks: a %+v, b %+v", st.Steps["a"].Totals, st.Steps["b"].Totals)
			}
		}
		a, bt := st.Steps["a"].Totals, st.Steps["b"].Totals
		if a.Failed != 0 || a.Dead != 0 || bt.Ended != 0 || bt.Failed != 10 {
			t.Fatalf("a %+v, b %+v: want 10 ended at a, 10 failed and dead at b", a, bt)
		}
		if a.RunP50MS == nil || *a.RunP50MS < 18 || a.WaitP95MS == nil || bt.RunP95MS == nil {
			t.Fatalf("latencies: a run p50 %v (a 20 ms sleep), a wait p95 %v, b run p95 %v", a.RunP50MS, a.WaitP95MS, bt.RunP95MS)
		}
	})
}
