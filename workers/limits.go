package workers

import (
	"context"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// The satellite's side of a step's limits (dsat.Limits). Every satellite
// asks the step's limiter (dsat.Client.AcquireLimits, one script on keys
// of the step's own hash tag) for a permit per token it read, just before
// it begins them; it begins the granted tokens eagerly, at the grant's
// time, and keeps the others read but not begun (the reader's spill,
// taken first at its next turn) until a permit frees: when the rate
// window's oldest grant leaves it, when a token of this satellite ends,
// and at the latest every limitPoll. Before a new read, the reader reads
// only as many tokens as the limiter had permits left at its last
// answer. Running permits are leases of the visibility timeout, renewed
// with the claims and released when a token ends.

// limitPoll is how often a reader whose step is at its running limit asks
// again (a release by another satellite is not announced).
const limitPoll = 100 * time.Millisecond

// stepLimiter is one step's limiter client on this satellite; nil for a
// step without limits.
type stepLimiter struct {
	r *stepRunner
	// free is the permits left at the limiter's last answer (-1: none
	// yet, or no limit), wait how long that answer said to wait; both
	// reader-owned.
	free int
	wait time.Duration
	// wake gets a signal when a token of this step ends here.
	wake chan struct{}
	rel  batcher[string]
}

func newStepLimiter(r *stepRunner) *stepLimiter {
	if r.step.Limits == nil {
		return nil
	}
	return &stepLimiter{r: r, free: -1, wake: make(chan struct{}, 1)}
}

// readable returns how many of n tokens the reader may read now: n, or
// the permits left; 0 (after waiting for a permit to free) when none is.
func (l *stepLimiter) readable(ctx context.Context, n int) int {
	if l.free != 0 {
		if l.free > 0 {
			return min(n, l.free)
		}
		return n
	}
	g, err := l.r.s.c.AcquireLimits(ctx, l.r.p, l.r.step.Name, nil, l.r.vis)
	if err != nil {
		l.failed(err)
		l.pause(ctx)
		return 0
	}
	l.free, l.wait = g.Free, g.Wait
	if g.Free == 0 {
		l.r.markHeld()
		l.pause(ctx)
		return 0
	}
	return l.readable(ctx, n)
}

// grant asks for a permit for each job, in order, and returns how many of
// them got one (from the first) and when: begin those at that time.
func (l *stepLimiter) grant(jobs []*job) (int, time.Time) {
	ids := make([]string, len(jobs))
	for i, j := range jobs {
		ids[i] = j.m.LeaseID()
	}
	ctx, cancel := context.WithTimeout(l.r.s.engineCtxOr(), 5*time.Second)
	defer cancel()
	g, err := l.r.s.c.AcquireLimits(ctx, l.r.p, l.r.step.Name, ids, l.r.vis)
	if err != nil {
		l.failed(err)
		l.free, l.wait = 0, limitPoll
		return 0, time.Time{}
	}
	l.free, l.wait = g.Free, g.Wait
	for _, j := range jobs[:g.Granted] {
		j.leased.Store(l.r.step.Limits.Running > 0)
	}
	return g.Granted, g.At
}

// pause waits until a permit may have freed: the wait of the limiter's
// last answer (at most limitPoll for a running limit, at most a third of
// the visibility timeout), or a token of this step ending here.
func (l *stepLimiter) pause(ctx context.Context) {
	d := l.wait
	if d <= 0 || d > limitPoll && l.r.step.Limits.Rate.Count == 0 {
		d = limitPoll
	}
	d = min(d, l.r.vis/3) // the waiting tokens' claims are renewed (keepSpill)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	case <-l.wake:
	}
}

// release gives back the running permit of a job that ended (or was not
// begun), batched with the other jobs ending meanwhile, and wakes the
// reader.
func (l *stepLimiter) release(j *job) {
	if l == nil || !j.leased.Swap(false) {
		return
	}
	l.rel.add(j.m.LeaseID(), l.sendRelease)
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// sendRelease releases a batch of permits, retrying a few times; a permit
// whose release failed comes back when its lease ends.
func (l *stepLimiter) sendRelease(ids []string) {
	failed := inBatches(l.r.s.engineCtxOr(), ids, func(ctx context.Context, chunk []string) []string {
		if err := l.r.s.c.ReleaseLimits(ctx, l.r.p, l.r.step.Name, chunk); err != nil {
			if retryable(err) {
				return chunk
			}
			l.failed(err)
		}
		return nil
	})
	if len(failed) > 0 {
		l.r.log.Warn().Int("permits", len(failed)).Dur("lease", l.r.vis).Msg("release running permits failed; they come back when their lease ends")
	}
}

// renew extends the running permit of a job whose claim was renewed.
func (l *stepLimiter) renew(ctx context.Context, j *job) {
	if l == nil || !j.leased.Load() {
		return
	}
	if err := l.r.s.c.RenewLimits(ctx, l.r.p, l.r.step.Name, []string{j.m.LeaseID()}, l.r.vis); err != nil {
		l.r.s.logLimited(l.r.name()+"/limits", l.r.log.Warn().Err(err), "renew a running permit failed")
	}
}

func (l *stepLimiter) failed(err error) {
	l.r.s.logLimited(l.r.name()+"/limits", l.r.log.Warn().Err(err), "ask the step's limiter failed; its tokens wait")
}

// limitGrant is the part of dispatch for a step with limits: the first
// granted jobs are begun, the others are given back as entries to read
// again; at is the grant's time.
func (r *stepRunner) limitGrant(jobs []*job) (granted []*job, deferred []msgRef, at time.Time) {
	if r.lim == nil || len(jobs) == 0 {
		return jobs, nil, time.Time{}
	}
	g, at := r.lim.grant(jobs)
	for _, j := range jobs[g:] {
		j.cancel()
		deferred = append(deferred, j.m)
	}
	if len(deferred) > 0 {
		r.markHeld() // waiting for a permit does not count toward queue_timeout
	}
	return jobs[:g], deferred, at
}

// beginBatch begins ds at at, or now when at is zero.
func (r *stepRunner) beginBatch(ctx context.Context, ds []dsat.Delivery, at time.Time) ([]dsat.Outcome, []error) {
	if at.IsZero() {
		return r.s.c.BeginBatch(ctx, ds)
	}
	return r.s.c.BeginBatchAt(ctx, ds, at)
}

// keepSpill renews this consumer's claim of the tokens the reader holds
// read but not begun (spill: a step at its limits, paused, or with its
// next step full) once a third of the visibility timeout passed since
// keptAt (when the spill filled or was last renewed), so no reclaimer
// takes them over and counts a delivery while they wait; it drops those
// another consumer took over meanwhile. With an empty spill it makes no
// Redis call.
func (r *stepRunner) keepSpill(ctx context.Context, spill []msgRef, keptAt *time.Time) []msgRef {
	now := time.Now()
	if len(spill) == 0 || keptAt.IsZero() {
		*keptAt = now
		return spill
	}
	if now.Sub(*keptAt) < r.vis/3 {
		return spill
	}
	*keptAt = now
	owned := r.reader.Keep(ctx, spill)
	kept := spill[:0]
	for i, m := range spill {
		if owned[i] {
			kept = append(kept, m)
		}
	}
	return kept
}
