package workers

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// The satellite's side of a step's limits (dsat.Limits). Every satellite
// asks the step's limiter (dsat.Client.AcquireLimits, one script on keys
// of the step's own hash tag) for a permit per token it read, just before
// it begins them; it begins the granted tokens at the grant's time (the
// ACK carries it, also when the begin is lazy: written with the result,
// or by a late begin), and parks the others here, read but not begun (in its PEL, claims
// renewed: keepSpill), until a permit frees: when the rate window's
// oldest grant leaves it, when a token of this satellite ends, and at the
// latest every limitPoll. Parked tokens are offered again first, round
// robin over their fairness keys; while the step itself has permits left
// and fewer than parkCap tokens are parked, the reader also reads new
// tokens, so a key at its limits does not hold up the keys behind it in
// the stream. Running permits are leases of the visibility timeout,
// renewed with the claims and released when a token ends.
//
// A step whose only limit is a high rate (at least rateBatchMin permits per
// rateBatchLife) takes its permits in batches instead (issue 16): before a
// read it takes a budget of permits in one limiter call
// (dsat.Client.TakeRateBudget), reads at most as many tokens as it holds
// permits and spends them on the tokens read, with no limiter call per
// read; each permit times its token's ACK within its life, and the unused
// ones go back with the next batch taken. So a step limited far above its
// achieved rate reads and begins in batches like one without limits.

// limitPoll is how often a reader whose step (or a key) is at its limits
// asks again (a release by another satellite is not announced).
const limitPoll = 100 * time.Millisecond

// parkCap is the most tokens a satellite parks per step; beyond it, it
// reads no new token until some are begun.
const parkCap = 1024

// rateBatchLife is the longest life of a batch of rate permits (a
// twentieth of the rate's period if shorter): a satellite holds a batch
// that long at most, and its permits count in the rate's window that much
// longer than their grant.
var rateBatchLife = 50 * time.Millisecond

// rateBatchMin is the fewest permits per rateBatchLife for which a step
// whose only limit is its rate takes its permits in batches; a lower rate
// is granted per read (the limiter's call is then cheap beside the rate).
const rateBatchMin = 16

// rateHolders numbers the batches of rate permits taken in this process.
var rateHolders atomic.Int64

// parkedRef is a token read but not begun, and its fairness key.
type parkedRef struct {
	m   msgRef
	key string
}

// stepLimiter is one step's limiter client on this satellite; nil for a
// step without limits.
type stepLimiter struct {
	r *stepRunner
	// free is the step's permits left at the limiter's last answer (-1:
	// none yet, or no limit of the step's own), wait how long that answer
	// said to wait; parked and blocked (key -> until when it is not
	// offered again) are reader-owned too.
	free    int
	wait    time.Duration
	parked  []parkedRef
	blocked map[string]time.Time
	// wake gets a signal when a token of this step ends here and its
	// permit was given back; freed (under mu) lists the keys of those
	// permits: the reader offers their parked tokens again at once.
	wake  chan struct{}
	rel   batcher[dsat.LimitRequest]
	mu    sync.Mutex
	freed map[string]bool
	// batch, when positive, is how many rate permits one batch asks for
	// (the step's only limit is a high rate); life is a batch's life and
	// budget the batch held, spent how many of its permits were used, idle
	// whether the last read brought no token (reader-owned).
	batch  int
	life   time.Duration
	budget *dsat.RateBudget
	spent  int
	idle   bool
}

func newStepLimiter(r *stepRunner) *stepLimiter {
	lim := r.step.Limits
	if lim == nil {
		return nil
	}
	l := &stepLimiter{r: r, free: -1, wake: make(chan struct{}, 1), blocked: map[string]time.Time{}, freed: map[string]bool{}, idle: true}
	if lim.Rate.Count > 0 && lim.Running == 0 && lim.Key == "" {
		l.life = min(rateBatchLife, lim.Rate.Per/20)
		least := rateBatchMin
		if m := r.s.cfg.rateBatchMin; m > 0 {
			least = m
		}
		if per := int(int64(lim.Rate.Count) * int64(l.life) / int64(lim.Rate.Per)); per >= least {
			l.batch = min(per, 4*r.s.cfg.ReadBatch, dsat.MaxRateBatch)
		}
	}
	return l
}

// atLimit reports whether the step is at its limits by the limiter's last
// answer (and, taking batches, no permit of the batch is left).
func (l *stepLimiter) atLimit() bool {
	return l != nil && l.free == 0 && (l.batch == 0 || l.budget.Left() == 0)
}

// take takes a batch of at least n rate permits, giving back the unused
// ones of the batch held: twice as many as that one's reader spent (at
// most batch), so a reader takes about what it spends in a batch's life.
func (l *stepLimiter) take(ctx context.Context, n int) {
	holder := l.r.s.cfg.ID + ":" + strconv.FormatInt(rateHolders.Add(1), 36)
	want := max(n, min(l.batch, 2*l.spent))
	b, free, wait, err := l.r.s.c.TakeRateBudget(ctx, l.r.p, l.r.step.Name, holder, want, l.life, l.budget)
	if err != nil {
		l.failed(err)
		l.free, l.wait = 0, limitPoll
		return
	}
	l.budget, l.free, l.wait = b, free, wait
	l.spent = 0
}

// grantBatch spends the batch's permits on jobs, in order, taking another
// batch for those it has none left for; it reports which got one.
func (l *stepLimiter) grantBatch(ctx context.Context, jobs []*job) []bool {
	var sent time.Time // the latest the jobs were sent: none is begun before
	for _, j := range jobs {
		if t := dsat.StreamIDTime(j.m.ID); t.After(sent) {
			sent = t
		}
	}
	l.idle = false
	ok := make([]bool, len(jobs))
	done := 0
	for try := 0; try < 2 && done < len(jobs); try++ {
		if try > 0 {
			l.take(ctx, len(jobs)-done)
		}
		k, at := l.budget.Use(len(jobs)-done, sent)
		l.spent += k
		for _, j := range jobs[done : done+k] {
			j.grantAt, j.grantUntil = at, l.budget.Until
			ok[done] = true
			done++
		}
	}
	return ok
}

// readable returns how many of n tokens the reader may read now: n, or
// the permits left; 0 (after waiting for a permit to free) when none is,
// or when parkCap tokens are parked.
func (l *stepLimiter) readable(ctx context.Context, n int) int {
	if len(l.parked) >= parkCap {
		l.r.markHeld()
		l.pause(ctx)
		return 0
	}
	if l.batch > 0 {
		// A batch is taken when the one held cannot fill the read (its
		// few permits left go back with it), but not ahead of a read that
		// may block on an idle stream (the last read brought nothing): the
		// tokens it brings take one (grantBatch).
		if left := l.budget.Left(); left < n && (!l.idle && l.free != 0 || left == 0 && l.free == 0) {
			l.take(ctx, n)
		}
		l.idle = true // until a read brings tokens
		if left := l.budget.Left(); left > 0 {
			return min(n, left)
		}
		if l.free != 0 {
			return n
		}
		l.r.markHeld()
		l.pause(ctx)
		return 0
	}
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

// ready takes up to n parked tokens whose key is not known to be at its
// limits, round robin over the keys (the first parked of each key, then
// the second, ...), so a key with many waiting does not hold up one with
// few.
func (l *stepLimiter) ready(n int) []msgRef {
	if len(l.parked) == 0 {
		return nil
	}
	l.mu.Lock()
	for k := range l.freed {
		delete(l.blocked, k)
	}
	clear(l.freed)
	l.mu.Unlock()
	now := time.Now()
	rank := make([]int, len(l.parked)) // 0: not offered; else its round
	seen := map[string]int{}
	for i, p := range l.parked {
		if until, ok := l.blocked[p.key]; ok && now.Before(until) {
			continue
		}
		seen[p.key]++
		rank[i] = seen[p.key]
	}
	var out []msgRef
	for round := 1; len(out) < n && round <= len(l.parked); round++ {
		found := false
		for i, p := range l.parked {
			if rank[i] == round && len(out) < n {
				out, rank[i], found = append(out, p.m), -1, true
			}
		}
		if !found {
			break
		}
	}
	kept := l.parked[:0]
	for i, p := range l.parked {
		if rank[i] != -1 {
			kept = append(kept, p)
		}
	}
	l.parked = kept
	return out
}

// park keeps tokens that got no permit, in order, after those parked
// before; a key refused a permit is not offered again for limitPoll.
func (l *stepLimiter) park(ps []parkedRef, keyRefused map[string]bool) {
	until := time.Now().Add(limitPoll)
	for k := range keyRefused {
		l.blocked[k] = until
	}
	for k, t := range l.blocked {
		if time.Now().After(t) {
			delete(l.blocked, k)
		}
	}
	l.parked = append(l.parked, ps...)
}

// readBlock is how long a read of new tokens may block: not past the next
// offer of the parked ones.
func (l *stepLimiter) readBlock(block time.Duration) time.Duration {
	if l != nil && len(l.parked) > 0 {
		return min(block, limitPoll)
	}
	return block
}

// grant asks for a permit for each job, in order, and returns which got
// one; it sets their grantAt and grantUntil: begin them then.
func (l *stepLimiter) grant(jobs []*job) []bool {
	ctx, cancel := context.WithTimeout(l.r.s.engineCtxOr(), 5*time.Second)
	defer cancel()
	if l.batch > 0 {
		return l.grantBatch(ctx, jobs)
	}
	reqs := make([]dsat.LimitRequest, len(jobs))
	for i, j := range jobs {
		if k := l.r.step.Limits.Key; k != "" {
			j.limKey = dsat.LimitKey(k, j.d.Payload)
		}
		reqs[i] = dsat.LimitRequest{ID: j.m.LeaseID(), Key: j.limKey}
	}
	g, err := l.r.s.c.AcquireLimits(ctx, l.r.p, l.r.step.Name, reqs, l.r.vis)
	if err != nil {
		l.failed(err)
		l.free, l.wait = 0, limitPoll
		return make([]bool, len(jobs))
	}
	l.free, l.wait = g.Free, g.Wait
	lim := l.r.step.Limits
	for i, j := range jobs {
		if g.Granted[i] {
			j.leased.Store(lim.Running > 0 || lim.Key != "" && lim.RunningPerKey > 0)
			j.grantAt, j.grantUntil = g.At, g.At
		}
	}
	return g.Granted
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
// begun), batched with the other jobs ending meanwhile; once given back,
// the reader is woken (sendRelease).
func (l *stepLimiter) release(j *job) {
	if l == nil || !j.leased.Swap(false) {
		return
	}
	l.rel.add(dsat.LimitRequest{ID: j.m.LeaseID(), Key: j.limKey}, l.sendRelease)
}

// sendRelease releases a batch of permits, retrying a few times; a permit
// whose release failed comes back when its lease ends.
func (l *stepLimiter) sendRelease(reqs []dsat.LimitRequest) {
	failed := inBatches(l.r.s.engineCtxOr(), reqs, func(ctx context.Context, chunk []dsat.LimitRequest) []dsat.LimitRequest {
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
	l.mu.Lock()
	for _, q := range reqs {
		l.freed[q.Key] = true
	}
	l.mu.Unlock()
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// renew extends the running permit of a job whose claim was renewed.
func (l *stepLimiter) renew(ctx context.Context, j *job) {
	if l == nil || !j.leased.Load() {
		return
	}
	req := []dsat.LimitRequest{{ID: j.m.LeaseID(), Key: j.limKey}}
	if err := l.r.s.c.RenewLimits(ctx, l.r.p, l.r.step.Name, req, l.r.vis); err != nil {
		l.r.s.logLimited(l.r.name()+"/limits", l.r.log.Warn().Err(err), "renew a running permit failed")
	}
}

func (l *stepLimiter) failed(err error) {
	l.r.s.logLimited(l.r.name()+"/limits", l.r.log.Warn().Err(err), "ask the step's limiter failed; its tokens wait")
}

// limitGrant is the part of dispatch for a step with limits: the granted
// jobs are begun (at their grants: beginAtGrant), the others are parked
// (limiter.park) to be offered again.
func (r *stepRunner) limitGrant(jobs []*job) (granted []*job) {
	if r.lim == nil || len(jobs) == 0 {
		return jobs
	}
	ok := r.lim.grant(jobs)
	var parked []parkedRef
	refused := map[string]bool{}
	for i, j := range jobs {
		if ok[i] {
			granted = append(granted, j)
			continue
		}
		j.cancel()
		parked = append(parked, parkedRef{m: j.m, key: j.limKey})
		if r.lim.free != 0 && r.step.Limits.Key != "" {
			refused[j.limKey] = true // the step had permits: the key is at its limits
		}
	}
	if len(parked) > 0 {
		r.markHeld() // waiting for a permit does not count toward queue_timeout
		r.lim.park(parked, refused)
	}
	return granted
}

// beginAtGrant begins jobs at their grants' times (grantGroups), or now
// for a step without limits.
func (r *stepRunner) beginAtGrant(jobs []*job) []dsat.Outcome {
	if r.lim == nil {
		return r.begin(jobs, time.Time{})
	}
	outs := make([]dsat.Outcome, len(jobs))
	groups, ats := grantGroups(jobs)
	for g, idx := range groups {
		sub := make([]*job, len(idx))
		for k, i := range idx {
			sub[k] = jobs[i]
		}
		for k, o := range r.begin(sub, ats[g]) {
			outs[idx[k]] = o
		}
	}
	return outs
}

// grantGroups splits jobs (by index) into as few groups as it can, each
// begun at one time within the grant of every job in it (from grantAt to
// grantUntil: a batch of rate permits lives a while, another grant is a
// point in time): the jobs granted earliest while the latest grantAt among
// them is within every one's grant, and so on.
func grantGroups(jobs []*job) (groups [][]int, ats []time.Time) {
	order := make([]int, len(jobs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return jobs[a].grantAt.Compare(jobs[b].grantAt) })
	for len(order) > 0 {
		n, until := 1, jobs[order[0]].grantUntil
		for ; n < len(order) && !jobs[order[n]].grantAt.After(until); n++ {
			if u := jobs[order[n]].grantUntil; u.Before(until) {
				until = u
			}
		}
		groups = append(groups, order[:n:n])
		ats = append(ats, jobs[order[n-1]].grantAt)
		order = order[n:]
	}
	return groups, ats
}

// beginBatch begins ds at at, or now when at is zero.
func (r *stepRunner) beginBatch(ctx context.Context, ds []dsat.Delivery, at time.Time) ([]dsat.Outcome, []error) {
	if at.IsZero() {
		return r.s.c.BeginBatch(ctx, ds)
	}
	return r.s.c.BeginBatchAt(ctx, ds, at)
}

// keepSpill renews this consumer's claim of the tokens the reader holds
// read but not begun (spill: the step paused, or its next step full;
// parked: at its limits) once a third of the visibility timeout passed
// since keptAt (when they were read or last renewed), so no reclaimer
// takes them over and counts a delivery while they wait; it drops those
// another consumer took over meanwhile. With none held it makes no Redis
// call.
func (r *stepRunner) keepSpill(ctx context.Context, spill []msgRef, keptAt *time.Time) []msgRef {
	now := time.Now()
	var parked []parkedRef
	if r.lim != nil {
		parked = r.lim.parked
	}
	if len(spill)+len(parked) == 0 || keptAt.IsZero() {
		*keptAt = now
		return spill
	}
	if now.Sub(*keptAt) < r.vis/3 {
		return spill
	}
	*keptAt = now
	all := append([]msgRef(nil), spill...)
	for _, p := range parked {
		all = append(all, p.m)
	}
	owned := r.reader.Keep(ctx, all)
	kept := spill[:0]
	for i, m := range spill {
		if owned[i] {
			kept = append(kept, m)
		}
	}
	if r.lim != nil {
		keptParked := parked[:0]
		for i, p := range parked {
			if owned[len(spill)+i] {
				keptParked = append(keptParked, p)
			}
		}
		r.lim.parked = keptParked
	}
	return kept
}
