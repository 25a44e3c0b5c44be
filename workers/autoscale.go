package workers

import "time"

// scaleInput is what the autoscaler sees of one step's pool at a tick.
type scaleInput struct {
	Now      time.Time
	Backlog  int64 // entries in the step's streams not yet delivered
	Busy     int
	Limit    int
	Min, Max int
}

// scaler is the autoscaling policy of one pool. It is deterministic: the
// same inputs give the same decisions, so it is tested with a fake clock.
//
//   - Grow while there is backlog and every slot is busy: by half the limit
//     (at least one), but not past the backlog's need or Max.
//   - Shrink after QuietPeriod with no backlog and idle slots: to the
//     larger of half the limit and the busy count, not under Min; then wait
//     another quiet period before shrinking again.
type scaler struct {
	QuietPeriod time.Duration
	quietSince  time.Time
}

func (s *scaler) next(in scaleInput) int {
	limit := in.Limit
	switch {
	case in.Backlog > 0 && in.Busy >= in.Limit:
		s.quietSince = time.Time{}
		step := max(1, in.Limit/2)
		if int64(step) > in.Backlog {
			step = int(in.Backlog)
		}
		limit += step
	case in.Backlog == 0 && in.Busy < in.Limit:
		if s.quietSince.IsZero() {
			s.quietSince = in.Now
		} else if in.Now.Sub(s.quietSince) >= s.QuietPeriod {
			limit = max(in.Limit/2, in.Busy)
			s.quietSince = in.Now
		}
	default:
		s.quietSince = time.Time{}
	}
	return min(max(limit, in.Min), in.Max)
}
