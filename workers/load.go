package workers

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// scaleLoop measures each pool's load every ScaleInterval and resizes it.
func (s *Satellite) scaleLoop(ctx context.Context) {
	t := time.NewTicker(s.cfg.ScaleInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, r := range s.steps {
			if err := r.measure(ctx); err != nil {
				if ctx.Err() == nil {
					s.logLimited(r.name()+"/measure", r.log.Warn().Err(err), "measure load failed")
				}
				continue
			}
			limit, busy := r.pool.load()
			next := r.scaler.next(scaleInput{Now: time.Now(), Backlog: r.backlog.Load(), Busy: busy, Limit: limit,
				Min: r.step.Concurrency.Min, Max: r.step.Concurrency.Max})
			if next != limit {
				r.log.Debug().Int("from", limit).Int("to", next).Int64("backlog", r.backlog.Load()).Msg("pool resized")
				r.pool.setLimit(next)
			}
		}
	}
}

// measure reads the step's backlog (entries not yet delivered to any
// consumer) and pending count (delivered, not acknowledged) over all
// partitions in one round trip. Acknowledged entries are deleted, so the
// stream length is exactly backlog + pending.
func (r *stepRunner) measure(ctx context.Context) error {
	lens := make([]*redis.IntCmd, len(r.streams))
	pends := make([]*redis.XPendingCmd, len(r.streams))
	_, err := r.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, key := range r.streams {
			lens[i] = p.XLen(ctx, key)
			pends[i] = p.XPending(ctx, key, r.step.Name)
		}
		return nil
	})
	if err != nil && !redis.HasErrorPrefix(err, "NOGROUP") {
		return err
	}
	var total, pending int64
	for i := range r.streams {
		total += lens[i].Val()
		if pi, err := pends[i].Result(); err == nil {
			pending += pi.Count
		}
	}
	r.pending.Store(pending)
	r.backlog.Store(max(0, total-pending))
	return nil
}
