package workers

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
)

// watchLoop looks after running tokens every WatchInterval: it cancels
// handlers of tasks that were cancelled (so they notice within a second),
// and renews the claim of handlers running for a third of the visibility
// timeout. With nothing running it makes no Redis call.
func (s *Satellite) watchLoop(ctx context.Context) {
	every(ctx, s.cfg.WatchInterval, func(ctx context.Context) {
		if jobs := s.jobs.snapshot(); len(jobs) > 0 {
			s.checkCancelled(ctx, jobs)
			s.renewClaims(ctx, jobs)
		}
	})
}

func (s *Satellite) checkCancelled(ctx context.Context, jobs []*job) {
	cmds := make(map[string]*redis.StringCmd, len(jobs))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, j := range jobs {
			if _, seen := cmds[j.d.Task]; !seen {
				cmds[j.d.Task] = p.HGet(ctx, s.c.Keys().Task(j.m.part, j.d.Task), "status")
			}
		}
		return nil
	})
	if err != nil && ctx.Err() == nil && err != redis.Nil {
		s.logLimited("watch", s.log.Warn().Err(err), "check for cancelled tasks failed")
	}
	for _, j := range jobs {
		if cmds[j.d.Task].Val() == dsat.StatusCancelled && !j.cancelled.Swap(true) {
			j.r.log.Info().Str("task", j.d.Task).Msg("task cancelled; cancelling its running handler")
			j.cancel()
		}
	}
}

func (s *Satellite) renewClaims(ctx context.Context, jobs []*job) {
	now := time.Now()
	for _, j := range jobs {
		if j.lost.Load() || now.Sub(time.Unix(0, j.renewedAt.Load())) < j.r.vis/3 {
			continue
		}
		ok, err := s.c.Renew(ctx, j.d)
		if err != nil {
			s.logLimited("renew", j.r.log.Warn().Err(err), "renew claim failed")
			continue
		}
		j.renewedAt.Store(now.UnixNano())
		if !ok {
			j.lost.Store(true)
			j.r.log.Warn().Str("task", j.d.Task).Str("token", j.d.Token).Msg("token was reclaimed by another satellite while running")
		}
	}
}
