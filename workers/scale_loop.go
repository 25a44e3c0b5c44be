package workers

import (
	"context"
	"time"
)

// scaleLoop measures each pool's load every ScaleInterval and resizes it;
// while some step has a backlog it looks four times as often, so a pool
// under a burst reaches its size within a second or two.
func (s *Satellite) scaleLoop(ctx context.Context) {
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d := s.cfg.ScaleInterval
		if s.scale(ctx) {
			d = max(d/4, time.Millisecond)
		}
		t.Reset(d)
	}
}

// scale resizes every pool once, from the step's backlog in Redis and what
// the pool measured since the previous tick. It reports whether some step
// has a backlog.
func (s *Satellite) scale(ctx context.Context) (backlog bool) {
	for _, r := range s.steps {
		if err := r.measure(ctx); err != nil {
			if ctx.Err() == nil {
				s.logLimited(r.name()+"/measure", r.log.Warn().Err(err), "measure load failed")
			}
			continue
		}
		in := scaleInput{Now: time.Now(), Backlog: r.backlog.Load(), poolSample: r.pool.sample(),
			Min: r.concMin, Max: r.concMax}
		backlog = backlog || in.Backlog > 0
		next := r.scaler.next(in)
		if next != in.Limit {
			r.log.Debug().Int("from", in.Limit).Int("to", next).Int64("backlog", in.Backlog).
				Float64("busy_avg", in.BusyAvg).Float64("wait_share", in.WaitShare).Msg("pool resized")
			r.pool.setLimit(next)
		}
	}
	return backlog
}

// measure reads the step's backlog and pending count over all partitions
// in one round trip (see dsat.Client.StepLoads).
func (r *stepRunner) measure(ctx context.Context) error {
	loads, err := r.s.c.StepLoads(ctx, r.p, r.step.Name)
	if err != nil {
		return err
	}
	r.pending.Store(loads[r.step.Name].Pending)
	r.backlog.Store(loads[r.step.Name].Backlog)
	return nil
}
