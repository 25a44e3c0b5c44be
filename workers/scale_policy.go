package workers

import (
	"math"
	"time"
)

// scaleInput is what the autoscaler sees of one step's pool at a tick: the
// step's backlog in Redis now, and what the pool measured over the
// interval since the previous tick (poolSample).
type scaleInput struct {
	Now     time.Time
	Backlog int64 // entries in the step's streams not yet delivered
	poolSample
	Min, Max int
}

// Thresholds of the policy.
const (
	// starvedShare: under a backlog, a reader held back by a full pool for
	// at least this share of the interval means the pool is too small.
	starvedShare = 0.2
	// idleShare: a pool whose average busy slots stay under this share of
	// its limit, with no backlog, is larger than it needs.
	idleShare = 0.5
	// rushShare: a reader held back for at least this share of the
	// interval, with a backlog of four pools or more, quadruples the pool.
	rushShare = 0.5
)

// scaler is the autoscaling policy of one pool. It is deterministic: the
// same inputs give the same decisions, so it is tested with a fake clock.
// It decides from what happened over the interval, not from the busy count
// at the tick: a fast handler's slots are free at almost every instant even
// when the pool is what holds the step back.
//
//   - Grow while there is a backlog and the pool held the reader back
//     (it waited for free slots for starvedShare of the interval, or every
//     slot is busy now): double the limit (at least +1) — quadruple it when
//     the reader was held back half the interval and the backlog is four
//     pools or more — but not past the backlog's need or Max. From 1, a
//     pool under a large backlog reaches 64 in three ticks.
//   - Shrink after QuietPeriod with no backlog and the average busy slots
//     under idleShare of the limit: to the larger of half the limit, twice
//     the average busy slots and the busy count, not under Min; then wait
//     another quiet period before shrinking again.
type scaler struct {
	QuietPeriod time.Duration
	quietSince  time.Time
}

func (s *scaler) next(in scaleInput) int {
	limit := in.Limit
	starved := in.WaitShare >= starvedShare || in.Busy >= in.Limit
	switch {
	case in.Backlog > 0 && starved:
		s.quietSince = time.Time{}
		step := max(1, in.Limit)
		if in.WaitShare >= rushShare && in.Backlog >= 4*int64(in.Limit) {
			step = 3 * max(1, in.Limit) // far behind: quadruple
		}
		if int64(step) > in.Backlog {
			step = int(in.Backlog)
		}
		limit += step
	case in.Backlog == 0 && in.BusyAvg < idleShare*float64(in.Limit) && in.Busy < in.Limit:
		if s.quietSince.IsZero() {
			s.quietSince = in.Now
		} else if in.Now.Sub(s.quietSince) >= s.QuietPeriod {
			limit = max(in.Limit/2, int(math.Ceil(2*in.BusyAvg)), in.Busy)
			s.quietSince = in.Now
		}
	default:
		s.quietSince = time.Time{}
	}
	return min(max(limit, in.Min), in.Max)
}
