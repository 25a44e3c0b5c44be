package workers

import (
	"context"
	"slices"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// holdPoll is how often a held reader (paused, or its next steps full)
// looks again.
const holdPoll = 50 * time.Millisecond

// flowLoop reads the pauses every FlowInterval and holds the readers of
// the paused steps (they read, so begin, nothing until resumed). Running
// handlers finish.
func (s *Satellite) flowLoop(ctx context.Context) {
	breakers := s.hasBreakers()
	every(ctx, s.cfg.FlowInterval, func(ctx context.Context) {
		s.applyPauses(ctx)
		s.applyPriorities(ctx)
		if breakers {
			s.applyBreakers(ctx)
		}
	})
}

// applyPauses reads the pauses and holds or releases each step's reader.
// A failed read keeps the last state. Start runs it once before the
// readers start, so a step paused beforehand reads nothing.
func (s *Satellite) applyPauses(ctx context.Context) {
	paused, err := s.c.ListPaused(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logLimited("pauses", s.log.Warn().Err(err), "read pauses failed; keeping the last ones")
		}
		return
	}
	for _, r := range s.steps {
		now := paused.Step(r.p.Name, r.step.Name)
		if r.paused.Swap(now) != now {
			if now {
				r.log.Info().Msg("step paused: no new token is begun until it is resumed")
			} else {
				r.log.Info().Msg("step resumed")
			}
		}
	}
}

// limitedTargets lists the steps st sends to (next, or every route of a
// switch) that have a max_backlog.
func limitedTargets(p *dsat.Pipeline, st *dsat.Step) []string {
	var out []string
	for _, t := range st.Targets() {
		if ts, ok := p.Steps[t]; ok && ts.MaxBacklog > 0 && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// withinHeadroom gives back the slots of n that the steps this one feeds
// have no room for (max_backlog minus their backlog, the smallest), and
// returns how many to read: n for a step that feeds none with a
// max_backlog, 0 while one is full. Read only for such steps: one backlog
// read per read of tokens. On a failed read it reads n.
func (r *stepRunner) withinHeadroom(ctx context.Context, n int) int {
	if len(r.limited) == 0 {
		return n
	}
	room := n
	for _, t := range r.limited {
		b, err := r.s.c.Backlog(ctx, r.p, t)
		if err != nil {
			r.s.logLimited(r.name()+"/backlog", r.log.Warn().Err(err).Str("target", t), "read a next step's backlog failed")
			return n
		}
		room = min(room, int(max(0, int64(r.p.Steps[t].MaxBacklog)-b)))
	}
	r.pool.unreserve(n - room)
	return room
}
