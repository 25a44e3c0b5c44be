package workers

import (
	"context"
	"time"

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
	ids := make([]string, 0, len(jobs))
	seen := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		if !seen[j.d.Task] {
			seen[j.d.Task] = true
			ids = append(ids, j.d.Task)
		}
	}
	briefs, err := s.c.Briefs(ctx, ids)
	if err != nil {
		if ctx.Err() == nil {
			s.logLimited("watch", s.log.Warn().Err(err), "check for cancelled tasks failed")
		}
		return
	}
	cancelled := map[string]bool{}
	for _, b := range briefs {
		cancelled[b.ID] = b.Status == dsat.StatusCancelled
	}
	for _, j := range jobs {
		if cancelled[j.d.Task] && !j.cancelled.Swap(true) {
			j.r.log.Info().Str("task", j.d.Task).Msg("task cancelled; cancelling its running handler")
			j.cancel()
		}
	}
	s.checkCancelledByAny(ctx, jobs)
}

// checkCancelledByAny cancels the handlers whose token a join: any
// cancelled (dsat/mapjoin.go): it asks only about the tokens of steps
// upstream of such a join, so other pipelines cost nothing more.
func (s *Satellite) checkCancelledByAny(ctx context.Context, jobs []*job) {
	var ask []*job
	for _, j := range jobs {
		if !j.cancelled.Load() && j.r.p.CancelledByAny(j.r.step.Name) {
			ask = append(ask, j)
		}
	}
	if len(ask) == 0 {
		return
	}
	ds := make([]dsat.Delivery, len(ask))
	for i, j := range ask {
		ds[i] = j.d
	}
	gone, err := s.c.TokensCancelled(ctx, ds)
	if err != nil {
		if ctx.Err() == nil {
			s.logLimited("watch", s.log.Warn().Err(err), "check for cancelled tokens failed")
		}
		return
	}
	for i, j := range ask {
		if gone[i] && !j.cancelled.Swap(true) {
			j.r.log.Info().Str("task", j.d.Task).Str("token", j.d.Token).Msg("a join: any fired; cancelling the running handler of its other branch")
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
		if ok {
			j.r.lim.renew(ctx, j)
		}
		if !ok {
			j.lost.Store(true)
			j.r.log.Warn().Str("task", j.d.Task).Str("token", j.d.Token).Msg("token was reclaimed by another satellite while running")
		}
	}
}
