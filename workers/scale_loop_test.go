package workers

import (
	"context"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
	"github.com/dsat-dev/dsat/internal/wait"
)

// TestPoolGrowsUnderBacklog: with a backlog and every worker busy the pool
// grows from min towards max; idle, it returns to min.
func TestPoolGrowsUnderBacklog(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: one
version: 1.0.0
steps:
  a: {handler: work, concurrency: {min: 1, max: 6}}
`)
		m := NewMux()
		m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			wait.Sleep(ctx, 30*time.Millisecond)
			return dsat.Result{Output: task.Payload}, nil
		})
		cfg := b.fast("s1")
		cfg.QuietPeriod = 300 * time.Millisecond
		s := b.start(m, cfg)
		ids := b.submit(150, `{}`)
		peak := 0
		deadline := time.Now().Add(20 * time.Second)
		for time.Now().Before(deadline) && peak < 6 {
			peak = max(peak, s.Info().Steps["one/a"].Concurrency)
			time.Sleep(20 * time.Millisecond)
		}
		if peak != 6 {
			t.Fatalf("pool peaked at %d, want max 6", peak)
		}
		b.wait(ids, 20*time.Second)
		deadline = time.Now().Add(10 * time.Second)
		for s.Info().Steps["one/a"].Concurrency != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("idle pool stayed at %d", s.Info().Steps["one/a"].Concurrency)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestIdleSatelliteCPU measures the CPU an idle satellite uses with the
// default timings (real Redis only: miniredis runs in this process).
func TestIdleSatelliteCPU(t *testing.T) {
	redistest.Slow(t, "measures an idle satellite's CPU over 5 s")
	if testing.Short() {
		t.Skip("takes 5s")
	}
	be := redistest.Backends()[1]
	b := setup(t, be, twoStep)
	m := NewMux()
	RegisterBuiltins(m, 0)
	m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
		return dsat.Result{Output: task.Payload}, nil
	})
	b.start(m, Config{ID: "idle"})
	time.Sleep(500 * time.Millisecond) // start-up done
	cpu := func() time.Duration {
		var ru syscall.Rusage
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
		return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	// The median of five 1-second windows: the process also runs the
	// garbage collector and the tails of earlier tests (-count, -race),
	// which show up as one busy window, not as the satellite's idle cost.
	shares := make([]float64, 5)
	for i := range shares {
		c0, w0 := cpu(), time.Now()
		time.Sleep(time.Second)
		shares[i] = float64(cpu()-c0) / float64(time.Since(w0))
	}
	slices.Sort(shares)
	share := shares[len(shares)/2]
	t.Logf("windows %.3f", shares)
	t.Logf("idle satellite (2 steps x 2 partitions, default timings, -race=%v): %.3f%% of a core", raceEnabled, 100*share)
	limit := 0.005
	if raceEnabled {
		limit = 0.03 // the race detector multiplies CPU per call
	}
	if share > limit {
		t.Fatalf("idle satellite uses %.2f%% of a core", 100*share)
	}
}

// TestPoolGrowsForFastHandler: a handler that returns at once leaves its
// slots free at almost every instant, yet under a backlog of 10,000
// tokens its pool must grow (the reader waits for slots), and shrink back
// once idle.
func TestPoolGrowsForFastHandler(t *testing.T) {
	redistest.Slow(t, "13,000 tasks, 7 s; TestPoolGrowsUnderBacklog covers growth in the fast check")
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: one
version: 1.0.0
steps:
  a: {handler: fast}
`)
		m := NewMux()
		m.HandleFunc("fast", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		var ids []string
		payloads := make([][]byte, 500)
		for i := range payloads {
			payloads[i] = []byte(`{}`)
		}
		n := 10000
		if !be.Real {
			n = 3000 // miniredis is slower; the policy is the same
		}
		for len(ids) < n {
			got, err := b.c.SubmitBatch(b.ctx, "one", payloads)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, got...)
		}
		cfg := b.fast("s1")
		cfg.QuietPeriod = 300 * time.Millisecond
		s := b.start(m, cfg)
		peak := 0
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			peak = max(peak, s.Info().Steps["one/a"].Concurrency)
			if s.Info().Steps["one/a"].Processed >= int64(len(ids)) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		if peak < 32 {
			t.Fatalf("pool of a fast handler peaked at %d under a backlog of %d, want at least 32", peak, len(ids))
		}
		b.wait(ids[len(ids)-10:], 30*time.Second)
		deadline = time.Now().Add(15 * time.Second)
		for s.Info().Steps["one/a"].Concurrency != 1 {
			if time.Now().After(deadline) {
				t.Fatalf("idle pool stayed at %d", s.Info().Steps["one/a"].Concurrency)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}
