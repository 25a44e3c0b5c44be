package workers

import (
	"context"
	"time"
)

// The satellite's side of the circuit breakers (dsat.Breaker): the flow
// loop reads the breakers' states with the pauses and holds the reader of
// a step whose breaker is open; once its time is up, one satellite wins
// the probe and reads one token; each attempt's outcome is reported.

// probeLease is how long a probe is held past the step's timeout before
// another satellite may probe instead (its prober died).
const probeLease = 5 * time.Second

// hasBreakers reports whether a served step has a breaker (else the flow
// loop reads no breaker state: nothing is spent on them).
func (s *Satellite) hasBreakers() bool {
	for _, r := range s.steps {
		if r.step.Breaker != nil {
			return true
		}
	}
	return false
}

// applyBreakers holds or releases each step's reader by its breaker, and
// claims the probe of an open breaker whose time is up.
func (s *Satellite) applyBreakers(ctx context.Context) {
	trips := make([]int64, len(s.steps))
	for i, r := range s.steps {
		trips[i] = r.trips.Load()
	}
	states, err := s.c.Breakers(ctx)
	if err != nil {
		if ctx.Err() == nil {
			s.logLimited("breakers", s.log.Warn().Err(err), "read circuit breakers failed; keeping the last states")
		}
		return
	}
	now := s.c.Config().Now()
	for i, r := range s.steps {
		if r.step.Breaker == nil {
			continue
		}
		st, open := states[r.p.Name+"/"+r.step.Name]
		if !open && r.trips.Load() != trips[i] {
			continue // opened here by a failure since the read began: the read is stale
		}
		if r.tripped.Swap(open) != open && !open {
			r.probe.Store(0)
			r.log.Info().Msg("circuit breaker closed: tokens are begun again")
		}
		if !open || st.Until.After(now) || r.probe.Load() > 0 {
			continue
		}
		won, err := s.c.BreakerProbe(ctx, r.p.Name, r.step.Name, s.cfg.ID, r.step.Timeout+probeLease)
		if err != nil { // won: only its BREAKER event was not written
			s.logLimited(r.name()+"/probe", r.log.Warn().Err(err), "claim a circuit breaker's probe failed")
		}
		if won { // logged when a token runs as the probe (the step may have none)
			r.probe.Store(1)
			r.log.Debug().Msg("circuit breaker probe claimed: the next token read runs as the probe")
		}
	}
}

// breakerOutcome reports an attempt's outcome to the step's breaker: a
// failed run counts (and may open it), a success while it is not closed
// may close it. Cancelled, snoozed and interrupted runs do not count.
func (r *stepRunner) breakerOutcome(outcome string) {
	if r.step.Breaker == nil {
		return
	}
	ctx, cancel := context.WithTimeout(r.s.engineCtxOr(), 5*time.Second)
	defer cancel()
	switch outcome {
	case "error", "timeout", "panic":
		opened, err := r.s.c.BreakerFailed(ctx, r.p.Name, r.step.Name, r.s.cfg.ID)
		if err != nil { // opened: only its BREAKER event was not written
			r.s.logLimited(r.name()+"/breaker", r.log.Warn().Err(err), "count a failure for the circuit breaker failed")
		}
		if opened {
			r.trips.Add(1)
			r.tripped.Store(true)
			r.probe.Store(0)
			b := r.step.Breaker
			r.log.Warn().Int("failures", b.Failures).Dur("within", b.Within).Dur("open_for", b.OpenFor).
				Msg("circuit breaker opened: no new token is begun until it has been open for open_for, then one probe runs")
		}
	case "ok":
		if !r.tripped.Load() {
			return
		}
		closed, err := r.s.c.BreakerSucceeded(ctx, r.p.Name, r.step.Name, r.s.cfg.ID)
		if err != nil { // closed: only its BREAKER event was not written
			r.s.logLimited(r.name()+"/breaker", r.log.Warn().Err(err), "report a success to the circuit breaker failed")
		}
		if closed {
			r.tripped.Store(false)
			r.log.Info().Msg("circuit breaker closed by a successful probe")
		}
	}
}
