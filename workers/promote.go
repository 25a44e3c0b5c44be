package workers

import (
	"context"

	"github.com/dsat-dev/dsat/dsat"
)

// promoteBatch is the most retries moved per script call.
const promoteBatch = 100

// promoteLoop moves due retries of every served partition back to their
// step streams, cancels tasks past their deadline and times out tokens
// past their step's queue_timeout (keepTime). Every satellite runs it; the
// scripts make concurrent runs harmless.
func (s *Satellite) promoteLoop(ctx context.Context) {
	every(ctx, s.cfg.PromoteInterval, func(ctx context.Context) {
		s.promoteDue(ctx)
		keepTime(ctx, s.c, s.sweeps, s.stepHeld, s.countTimeouts, s.logLimited, &s.log)
	})
}

// promoteDue moves every due retry of every served partition.
func (s *Satellite) promoteDue(ctx context.Context) {
	for _, pr := range s.parts {
		for ctx.Err() == nil {
			n, err := s.c.Promote(ctx, pr.part, promoteBatch)
			if err != nil {
				if ctx.Err() == nil {
					s.logLimited("promote", s.log.Warn().Err(err).Str("partition", pr.part.Tag()), "promote retries failed")
				}
				break
			}
			if n < promoteBatch {
				break
			}
		}
	}
}

// stepHeld reports whether the time keeper must leave a step's queued
// tokens alone: its reader here is held (paused, breaker open, next step
// full) or was within the step's queue_timeout.
func (s *Satellite) stepHeld(p dsat.Partition, step string) bool {
	r := s.runnerOf(p, step)
	return r != nil && r.recentlyHeld(r.step.QueueTimeout)
}

// runnerOf returns the runner of a step of p's pipeline version, nil if
// this satellite runs none (a draining version has runners of its own).
func (s *Satellite) runnerOf(p dsat.Partition, step string) *stepRunner {
	for _, r := range s.steps {
		if r.p.Name == p.Pipeline && r.p.Version.API() == p.API && r.step.Name == step {
			return r
		}
	}
	return nil
}

// countTimeouts adds the time keeper's queue timeouts of a served step to
// its statistics (flushed by the stats loop).
func (s *Satellite) countTimeouts(p dsat.Partition, step string, failed, dead int) {
	if r := s.runnerOf(p, step); r != nil {
		r.stats.failed.Add(int64(failed))
		r.stats.dead.Add(int64(dead))
	}
}
