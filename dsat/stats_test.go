package dsat_test

import (
	"errors"
	"math"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestLatencyBin: bins are monotone, every duration falls inside its bin's
// bounds, and a bin is at most a quarter of its lower bound wide.
func TestLatencyBin(t *testing.T) {
	t.Parallel()
	prev := 0
	for us := int64(0); us < 1<<22; us += 1 + us/97 {
		d := time.Duration(us) * time.Microsecond
		b := dsat.LatencyBin(d)
		if b < prev {
			t.Fatalf("bin of %v is %d, below the bin of a shorter duration (%d)", d, b, prev)
		}
		prev = b
		var h dsat.LatencyHistogram
		h.Add(d)
		lo, _ := h.Quantile(1e-9) // the bin's lower bound
		hi, _ := h.Quantile(1)    // its upper bound
		ms := float64(us) / 1000
		if ms < lo-1e-9 || ms >= hi+1e-9 && us > 0 {
			t.Fatalf("%v is outside its bin [%v, %v) ms", d, lo, hi)
		}
		if us >= 4 && hi-lo > lo/4+1e-9 {
			t.Fatalf("bin of %v is [%v, %v) ms: wider than a quarter of its lower bound", d, lo, hi)
		}
	}
	if b := dsat.LatencyBin(1000 * time.Hour); b != dsat.LatencyBins-1 {
		t.Fatalf("a very long duration: bin %d, want the last", b)
	}
	if b := dsat.LatencyBin(-time.Second); b != 0 {
		t.Fatalf("a negative duration: bin %d, want 0", b)
	}
}

func TestParseStatsWindow(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]time.Duration{"": 15 * time.Minute, "10s": 10 * time.Second, "15m": 15 * time.Minute,
		"95s": 100 * time.Second, "1m": time.Minute} {
		if got, err := dsat.ParseStatsWindow(in); err != nil || got != want {
			t.Errorf("ParseStatsWindow(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"9s", "0", "-1m", "15m1s", "1h", "abc", "10"} {
		if _, err := dsat.ParseStatsWindow(in); !errors.Is(err, dsat.ErrInvalidWindow) {
			t.Errorf("ParseStatsWindow(%q): %v, want ErrInvalidWindow", in, err)
		}
	}
}

// uniform fills a histogram with n durations spread evenly over (0, max].
func uniform(n int, maxd time.Duration) dsat.LatencyHistogram {
	var h dsat.LatencyHistogram
	for i := 1; i <= n; i++ {
		h.Add(maxd * time.Duration(i) / time.Duration(n))
	}
	return h
}

func near(got *float64, want float64) bool {
	return got != nil && math.Abs(*got-want) <= want*0.11
}

// TestStatsRecordAndRead: samples of two satellites merge in their bucket,
// the series has one value per 10-second bucket of the window with zeros
// and nulls where nothing was recorded, percentiles come out of a known
// distribution within the histogram's precision, and buckets expire after
// the longest window.
func TestStatsRecordAndRead(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		h.advance(3 * time.Second) // 03:04:08: inside the bucket of 03:04:00
		t0 := h.clock()
		// Satellite 1: 600 ends of a over 1..1000 ms, satellite 2: 400.
		s1 := dsat.StepSample{Pipeline: "linear", Step: "a", Ended: 600, Failed: 2, Run: uniform(600, time.Second), Wait: uniform(600, 100*time.Millisecond)}
		s2 := dsat.StepSample{Pipeline: "linear", Step: "a", Ended: 400, Dead: 1, Run: uniform(400, time.Second), Wait: uniform(400, 100*time.Millisecond)}
		if err := h.c.RecordStats(h.ctx, t0, []dsat.StepSample{s1, {Pipeline: "linear", Step: "b"}}); err != nil {
			t.Fatal(err)
		}
		if err := h.c.RecordStats(h.ctx, t0, []dsat.StepSample{s2}); err != nil {
			t.Fatal(err)
		}
		// 25 s later, two ends of c, in the bucket of 03:04:30.
		h.advance(25 * time.Second)
		c := dsat.StepSample{Pipeline: "linear", Step: "c", Ended: 2, Run: uniform(2, 4*time.Millisecond)}
		if err := h.c.RecordStats(h.ctx, h.clock(), []dsat.StepSample{c}); err != nil {
			t.Fatal(err)
		}
		st, err := h.c.Stats(h.ctx, "linear", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if len(st.Times) != 6 || st.BucketSeconds != 10 || st.Window != "1m0s" {
			t.Fatalf("times %v, bucket %d, window %s: want 6 buckets of 10 s", st.Times, st.BucketSeconds, st.Window)
		}
		if last := st.Times[5].Time; !last.Equal(time.Date(2026, 1, 2, 3, 4, 30, 0, time.UTC)) {
			t.Fatalf("the last bucket starts at %v, want 03:04:30", last)
		}
		if len(st.Steps) != 3 {
			t.Fatalf("steps %v: want every step of the pipeline", st.Steps)
		}
		a := st.Steps["a"]
		if a.Ended[2] != 1000 || a.Failed[2] != 2 || a.Dead[2] != 1 || a.Totals.Ended != 1000 || a.Ended[5] != 0 {
			t.Fatalf("step a: ended %v failed %v dead %v totals %+v", a.Ended, a.Failed, a.Dead, a.Totals)
		}
		if !near(a.RunP50MS[2], 500) || !near(a.RunP95MS[2], 950) || !near(a.WaitP50MS[2], 50) || !near(a.WaitP95MS[2], 95) {
			t.Fatalf("step a percentiles: run p50 %v p95 %v, wait p50 %v p95 %v; want 500, 950, 50, 95 (±11 %%)",
				*a.RunP50MS[2], *a.RunP95MS[2], *a.WaitP50MS[2], *a.WaitP95MS[2])
		}
		if a.RunP50MS[1] != nil || a.RunP50MS[3] != nil || !near(a.Totals.RunP95MS, 950) {
			t.Fatalf("step a: a bucket without runs has a percentile, or the totals are off: %v %v %v", a.RunP50MS[1], a.RunP50MS[3], a.Totals.RunP95MS)
		}
		if cs := st.Steps["c"]; cs.Ended[5] != 2 || cs.Ended[2] != 0 || cs.RunP50MS[5] == nil {
			t.Fatalf("step c: %v %v", cs.Ended, cs.RunP50MS)
		}
		if bs := st.Steps["b"]; bs.Totals.Ended != 0 || bs.Totals.RunP50MS != nil {
			t.Fatalf("step b recorded nothing: %+v", bs.Totals)
		}
		// The bucket lives StatsMaxWindow + 1 min after its end.
		key := h.c.Keys().Stats("linear", t0.Truncate(dsat.StatsBucket).Unix())
		ttl := h.rdb.TTL(h.ctx, key).Val()
		if ttl < 15*time.Minute || ttl > 16*time.Minute+dsat.StatsBucket {
			t.Fatalf("TTL of %s is %v: want about 16 min after the bucket's end", key, ttl)
		}
		// A window of 15 min still sees it; after the TTL it is gone.
		st, _ = h.c.Stats(h.ctx, "linear", 0)
		if len(st.Times) != 90 || st.Steps["a"].Totals.Ended != 1000 {
			t.Fatalf("the default window: %d buckets, %d ended", len(st.Times), st.Steps["a"].Totals.Ended)
		}
		if h.mini != nil {
			h.mini.FastForward(17 * time.Minute)
			if n := h.rdb.Exists(h.ctx, key).Val(); n != 0 {
				t.Fatalf("bucket %s still there after its TTL", key)
			}
		}
		if _, err := h.c.Stats(h.ctx, "nope", time.Minute); !errors.Is(err, dsat.ErrPipelineNotFound) {
			t.Fatalf("unknown pipeline: %v", err)
		}
		if err := h.c.RecordStats(h.ctx, t0, []dsat.StepSample{{Pipeline: "linear", Step: "a"}}); err != nil {
			t.Fatalf("empty samples: %v", err)
		}
	})
}
