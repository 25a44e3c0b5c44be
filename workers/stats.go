package workers

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/wait"
)

// The satellite's side of the step statistics (dsat.RecordStats): each
// step counts its outcomes and latencies in atomics on the hot path (no
// Redis call, no lock), and the stats loop flushes every step's counts
// with one pipelined write every StatsInterval and at each bucket's end.

// stepStats is one step's counts since the last flush.
type stepStats struct {
	ended, failed, dead atomic.Int64
	run, wait           [dsat.LatencyBins]atomic.Int64
}

// observe counts one attempt that ran its handler to an outcome: its run
// time and its time in queue (handler start minus the token's emission,
// ts in Unix ms).
func (st *stepStats) observe(outcome string, started time.Time, run time.Duration, ts int64) {
	switch outcome {
	case "ok":
		st.ended.Add(1)
	case "error", "timeout", "panic":
		st.failed.Add(1)
	default: // cancelled, snoozed, dropped, interrupted: not a result of the step
		return
	}
	st.run[dsat.LatencyBin(run)].Add(1)
	st.wait[dsat.LatencyBin(time.Duration(max(started.UnixMilli()-ts, 0))*time.Millisecond)].Add(1)
}

// take moves the counts into a sample and zeroes them.
func (st *stepStats) take(s *dsat.StepSample) {
	s.Ended, s.Failed, s.Dead = st.ended.Swap(0), st.failed.Swap(0), st.dead.Swap(0)
	for b := range dsat.LatencyBins {
		s.Run[b] = st.run[b].Swap(0)
		s.Wait[b] = st.wait[b].Swap(0)
	}
}

// statsLoop flushes the steps' stats every StatsInterval, and just after
// each bucket's end, so that counts land in the bucket they were made in
// (within the timer's precision).
func (s *Satellite) statsLoop(ctx context.Context) {
	for {
		now := time.Now()
		next := now.Truncate(dsat.StatsBucket).Add(dsat.StatsBucket)
		d := min(s.cfg.StatsInterval, next.Sub(now))
		if !wait.Sleep(ctx, d) {
			return
		}
		// A flush just past a bucket's end belongs to the bucket it closes.
		s.flushStats(ctx, time.Now().Add(-time.Millisecond))
	}
}

// flushStats writes the counts made since the last flush to the bucket of
// at. A failed write is logged and its counts dropped (stats are a view,
// not a record).
func (s *Satellite) flushStats(ctx context.Context, at time.Time) {
	samples := make([]dsat.StepSample, 0, len(s.steps))
	for _, r := range s.steps {
		samples = append(samples, dsat.StepSample{Pipeline: r.p.Name, Step: r.step.Name})
		r.stats.take(&samples[len(samples)-1])
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.c.RecordStats(ctx, at, samples); err != nil && ctx.Err() == nil {
		s.logLimited("stats", s.log.Warn().Err(err), "write step stats failed; this interval's counts are dropped")
	}
}
