package workers

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/wait"
)

// stepRunner serves one step of one pipeline version on this satellite:
// its reader, its pool, its reclaimer and its counters.
type stepRunner struct {
	s      *Satellite
	p      *dsat.Pipeline
	step   *dsat.Step
	h      Handler
	opened StepHandler      // h's own handler for this step, closed by Stop (nil: none)
	reader *dsat.StepReader // the reader goroutine's, but for EnsureGroups
	vis    time.Duration
	pool   *pool
	scaler scaler
	log    zerolog.Logger

	processed atomic.Int64
	failed    atomic.Int64
	backlog   atomic.Int64
	pending   atomic.Int64
	// paused is set by the flow loop: the reader reads nothing meanwhile.
	paused atomic.Bool
	// tripped: the step's circuit breaker is open or half open (flow
	// loop); the reader reads nothing then but probe tokens (0 or 1).
	tripped atomic.Bool
	probe   atomic.Int32
	// trips counts the breaker openings this satellite's own failures
	// caused: a read of the breakers begun before one is stale, and does
	// not close the breaker here (applyBreakers).
	trips atomic.Int64
	// prio is set by the flow loop once the pipeline uses priorities:
	// the reader then reads the step's three levels (priority.go).
	prio atomic.Bool
	// heldAt is when the reader was last held (Unix ns; markHeld).
	heldAt atomic.Int64
	// limited lists the steps this one feeds that have a max_backlog: the
	// reader reads only as many tokens as they have room for (headroom).
	limited []string
	// lim is the step's limiter client (nil: the step has no limits).
	lim *stepLimiter

	// stats: the step's counts since the last stats flush (stats.go).
	stats stepStats

	completer completer
	late      batcher[*job] // jobs due for a late begin
	runners   *runners      // set by Start

	groupBackoff time.Duration // reader-owned

	// concMin and concMax bound the pool: the step's concurrency, kept
	// within what its handler can run at once (bound).
	concMin, concMax int
}

// bound keeps the step's pool to n tokens at once (before Start).
func (r *stepRunner) bound(n int) {
	r.concMax = max(1, min(r.concMax, n))
	r.concMin = min(r.concMin, r.concMax)
	r.pool = newPool(r.concMin)
}

func newStepRunner(s *Satellite, p *dsat.Pipeline, st *dsat.Step, h Handler) *stepRunner {
	r := &stepRunner{s: s, p: p, step: st, h: h, pool: newPool(st.Concurrency.Min),
		scaler: scaler{QuietPeriod: s.cfg.QuietPeriod}, concMin: st.Concurrency.Min, concMax: st.Concurrency.Max}
	r.vis = s.cfg.VisibilityTimeout
	if r.vis <= 0 {
		r.vis = st.Timeout + 30*time.Second
	}
	r.reader = s.c.NewStepReader(p, st.Name, s.cfg.ID)
	r.limited = limitedTargets(p, st)
	r.lim = newStepLimiter(r)
	r.log = s.log.With().Str("pipeline", p.Name).Str("step", st.Name).Logger()
	r.completer.s = s
	return r
}

// name is "pipeline/step".
func (r *stepRunner) name() string { return r.p.Name + "/" + r.step.Name }

// ensureGroups creates the step's consumer group on every partition's
// stream (MKSTREAM; an existing group is fine).
func (r *stepRunner) ensureGroups(ctx context.Context) error {
	if err := r.reader.EnsureGroups(ctx); err != nil {
		return fmt.Errorf("workers: %w", err)
	}
	return nil
}

// msgRef is one stream entry read for this step.
type msgRef = dsat.Entry

// readLoop is the step's reader. It takes pool slots before reading, so it
// never holds more tokens than it can run. After start and after any read
// error it first re-reads its own pending entries (id 0): a reply to a
// blocking read can arrive after the client gave up. When a reclaim scan is
// due it claims abandoned tokens with the same slots (see reclaim).
//
// One XREADGROUP over several partition streams returns up to COUNT entries
// from each stream: entries beyond the slots taken are kept (spill) and run
// first as slots free up; they are this consumer's pending entries already.
func (r *stepRunner) readLoop(ctx context.Context) {
	if r.prio.Load() { // before the cursor: our pending high and low entries too
		r.enablePriorities(ctx)
	}
	own := newOwnCursor(r.reader.Streams())
	rec := &reclaimState{due: time.Now().Add(r.reclaimInterval())}
	want := 1 // slots to wait for: more after a read that found a backlog
	var spill []msgRef
	var keptAt time.Time
	for ctx.Err() == nil {
		if r.prio.Load() && !r.reader.PrioritiesEnabled() {
			r.enablePriorities(ctx)
		}
		spill = r.keepSpill(ctx, spill, &keptAt)
		if r.held() {
			r.markHeld()
			wait.Sleep(ctx, holdPoll)
			continue
		}
		n, err := r.pool.acquire(ctx, r.s.cfg.ReadBatch, want, r.s.cfg.BatchLinger)
		if err != nil {
			return
		}
		if r.held() { // paused, or the breaker opened, while waiting for a slot
			r.pool.unreserve(n)
			continue
		}
		tripped := r.tripped.Load()
		if tripped && n > 1 { // one probe token
			r.pool.unreserve(n - 1)
			n = 1
		}
		if n = r.withinHeadroom(ctx, n); n == 0 {
			r.markHeld()
			wait.Sleep(ctx, holdPoll)
			continue
		}
		var msgs []msgRef
		reclaimed, fresh := false, false
		switch {
		case len(spill) > 0:
			k := min(n, len(spill))
			msgs, spill, fresh = spill[:k:k], spill[k:], true
		case r.lim != nil && len(r.lim.parked) > 0 && !own.active:
			msgs, fresh = r.lim.ready(n), true
		case own.active:
			msgs, err = r.readOwn(ctx, n, own)
		case !rec.due.After(time.Now()):
			msgs, reclaimed = r.reclaim(ctx, n, rec), true
		}
		want = 1
		if err == nil && len(msgs) == 0 && !own.active && r.lim != nil {
			k := r.lim.readable(ctx, n)
			r.pool.unreserve(n - k)
			if n = k; n == 0 {
				continue
			}
		}
		if err == nil && len(msgs) == 0 && !own.active {
			msgs, err = r.readNew(ctx, n)
			reclaimed, fresh = false, true
			if len(msgs) > n {
				spill, msgs = msgs[n:], msgs[:n:n]
			}
			if len(msgs) == n {
				want = r.s.cfg.ReadBatch
			}
		}
		if len(spill) > 0 {
			want = r.s.cfg.ReadBatch
		}
		if err != nil {
			r.pool.unreserve(n)
			if ctx.Err() != nil {
				return
			}
			own = newOwnCursor(r.reader.Streams()) // re-reads our pending entries, the spilled and parked ones too
			spill = nil
			if r.lim != nil {
				r.lim.parked = nil
			}
			r.readFailed(ctx, err)
			continue
		}
		r.groupBackoff = 0
		if !reclaimed && len(msgs) > 0 && r.held() {
			// Paused (or the breaker opened) during a blocking read: the
			// tokens wait, read, until the step runs again.
			spill = append(msgs, spill...)
			r.pool.unreserve(n)
			continue
		}
		if tripped && len(msgs) > 0 {
			r.probe.Store(0)
			r.log.Info().Msg("circuit breaker half open: running one probe token")
		}
		used := r.dispatch(msgs, reclaimed, fresh)
		r.pool.unreserve(n - used)
		if r.lim.atLimit() { // at the step's limits: wait for a permit
			r.lim.pause(ctx)
			continue
		}
		if trickle := len(msgs) > 0 && len(msgs) < n && len(spill) == 0 && !reclaimed; trickle && r.s.cfg.ReadLinger > 0 {
			wait.Sleep(ctx, r.s.cfg.ReadLinger)
		}
	}
}

// readFailed handles a read error: NOGROUP (the stream was flushed,
// evicted or deleted) recreates the groups; any error waits with an
// exponential backoff, so a broken Redis never causes a hot loop.
func (r *stepRunner) readFailed(ctx context.Context, err error) {
	r.groupBackoff = min(max(2*r.groupBackoff, 100*time.Millisecond), 5*time.Second)
	if dsat.IsNoGroup(err) {
		r.recreateGroups(ctx, r.log.Warn().Err(err).Dur("backoff", r.groupBackoff), "consumer group missing; recreating it")
	} else {
		r.s.logLimited(r.name()+"/read", r.log.Warn().Err(err).Dur("backoff", r.groupBackoff), "read failed")
	}
	wait.Sleep(ctx, r.groupBackoff)
}

// recreateGroups logs a lost consumer group (ev, msg) and creates the
// step's groups again.
func (r *stepRunner) recreateGroups(ctx context.Context, ev *zerolog.Event, msg string) {
	ev.Msg(msg)
	if err := r.ensureGroups(ctx); err != nil {
		r.log.Warn().Err(err).Msg("recreate consumer group")
	}
}

// ownCursor walks this consumer's pending entries, partition by partition.
type ownCursor struct {
	active bool
	ids    []string
	done   []bool
}

func newOwnCursor(n int) *ownCursor {
	c := &ownCursor{ids: make([]string, n), done: make([]bool, n)}
	c.reset()
	return c
}

func (c *ownCursor) reset() {
	c.active = true
	for i := range c.ids {
		c.ids[i], c.done[i] = "0", false
	}
}

func (r *stepRunner) readOwn(ctx context.Context, n int, c *ownCursor) ([]msgRef, error) {
	for i := range c.ids {
		if c.done[i] {
			continue
		}
		out, err := r.reader.ReadOwn(ctx, i, c.ids[i], n)
		if err != nil {
			return nil, err
		}
		if len(out) == 0 {
			c.done[i] = true
			continue
		}
		c.ids[i] = out[len(out)-1].ID
		return out, nil
	}
	c.active = false
	return nil, nil
}

// readNew reads new tokens (see dsat.StepReader.ReadNew: one blocked
// connection per step on one Redis, round-robin on a cluster).
func (r *stepRunner) readNew(ctx context.Context, n int) ([]msgRef, error) {
	return r.reader.ReadNew(ctx, n, r.lim.readBlock(r.s.cfg.Block))
}

// dispatch parses each entry and starts a job for each valid token; an
// entry that is not a valid token of this step goes to the dead letters
// with the reason. With a begin window (the default) a job starts at once
// and is begun only if its handler outlives the window (run, beginLate);
// otherwise every token is begun in one round trip (BeginBatch) before its
// handler runs. A fresh token (read for the first time) that waited in
// the stream past the step's queue_timeout is not run: it fails with
// TIMEOUT (see run). A step with limits starts only the tokens its
// limiter granted a permit, their ACK timed at the grant; the others are
// parked (limitGrant) to be offered again. It returns how many pool slots
// the jobs took.
func (r *stepRunner) dispatch(msgs []msgRef, reclaimed, fresh bool) int {
	jobs := make([]*job, 0, len(msgs))
	var late []*job // past the queue timeout
	qt := r.step.QueueTimeout
	var now time.Time
	if qt > 0 && fresh {
		now = r.s.c.Config().Now()
	}
	for _, m := range msgs {
		if r.s.jobs.running(m, r.step.Name) {
			continue // our own pending entry, still being run
		}
		env, err := r.parse(m)
		if err != nil {
			r.deadLetter(m, err.Error())
			continue
		}
		j := newJob(r, m, env, reclaimed)
		if waited := now.Sub(r.waitStart(m.ID)); fresh && qt > 0 && waited > qt {
			j.queueWait = waited
			late = append(late, j)
			continue
		}
		jobs = append(jobs, j)
	}
	for _, j := range late {
		r.start(j)
	}
	jobs = r.limitGrant(jobs)
	if len(jobs) == 0 {
		return len(late)
	}
	lazy := r.s.cfg.BeginWindow > 0
	var outs []dsat.Outcome
	if !lazy {
		outs = r.beginAtGrant(jobs)
	}
	used := len(late)
	for i, j := range jobs {
		if !lazy && outs[i] != dsat.Applied && outs[i] != dsat.AlreadyApplied {
			j.cancel()
			r.lim.release(j)
			continue
		}
		if lazy {
			j.beginDone = make(chan struct{})
			j.timer = time.AfterFunc(r.s.cfg.BeginWindow, func() { r.late.add(j, r.beginLate) })
		}
		r.start(j)
		used++
	}
	return used
}

// markHeld notes that the reader was held now: a token's queue_timeout
// counts from the later of its sending and the last hold (dispatch), so
// tokens that waited because the step was paused, its breaker open or
// its next step full do not time out for it.
func (r *stepRunner) markHeld() {
	r.heldAt.Store(r.s.c.Config().Now().UnixNano())
}

// held reports whether the reader must read nothing now: the step is
// paused, or its circuit breaker is open and this satellite has no probe
// to run.
func (r *stepRunner) held() bool {
	return r.paused.Load() || r.tripped.Load() && r.probe.Load() == 0
}

// waitStart is when a token's wait for this step began, for its
// queue_timeout: when it was sent, or the end of the last hold if later.
func (r *stepRunner) waitStart(entryID string) time.Time {
	sent := dsat.StreamIDTime(entryID)
	if h := time.Unix(0, r.heldAt.Load()); h.After(sent) {
		return h
	}
	return sent
}

// recentlyHeld reports whether the reader is held or was within d: the
// time keeper leaves such a step's tokens alone.
func (r *stepRunner) recentlyHeld(d time.Duration) bool {
	return r.held() || r.s.c.Config().Now().Sub(time.Unix(0, r.heldAt.Load())) < d
}

// start runs a job on the pool.
func (r *stepRunner) start(j *job) {
	r.s.jobs.add(j)
	r.s.work.Add(1)
	r.pool.begin()
	r.runners.start(j)
}

// begin records ACK for a batch of tokens, retrying failed calls a few
// times in smaller batches (inBatches), at time at (zero: now). A token
// whose begin failed is not run: it stays pending for the reclaimer.
func (r *stepRunner) begin(jobs []*job, at time.Time) []dsat.Outcome {
	outs := make([]dsat.Outcome, len(jobs))
	todo := make([]int, len(jobs))
	for i := range todo {
		todo[i] = i
	}
	inBatches(r.s.engineCtxOr(), todo, func(ctx context.Context, chunk []int) []int {
		ds := make([]dsat.Delivery, len(chunk))
		for k, i := range chunk {
			ds[k] = jobs[i].d
		}
		o, errs := r.beginBatch(ctx, ds, at)
		var again []int
		for k, i := range chunk {
			outs[i] = o[k]
			if errs[k] != nil {
				outs[i] = 0
				if retryable(errs[k]) {
					again = append(again, i)
				}
				r.s.logLimited(r.name()+"/begin", r.log.Warn().Err(errs[k]).Str("task", jobs[i].d.Task), "begin failed")
			}
		}
		return again
	})
	return outs
}

// beginLate begins the jobs whose handlers outlived the begin window, in
// one round trip. A token no longer wanted (task cancelled or finished,
// token stale) has its handler cancelled and its result ignored; a token
// whose begin failed keeps running (its result records the ACK).
func (r *stepRunner) beginLate(jobs []*job) {
	outs := r.beginAtGrant(jobs)
	for i, j := range jobs {
		if outs[i] == dsat.Dropped {
			j.dropped.Store(true)
			j.cancel()
		}
		close(j.beginDone)
	}
}

func (r *stepRunner) parse(m msgRef) (dsat.Envelope, error) {
	env, err := dsat.ParseEnvelope(m.Values, r.s.cfg.MaxPayload)
	if err != nil {
		return env, err
	}
	tid, _ := dsat.ParseTaskID(env.Task)
	switch {
	case env.Step != r.step.Name:
		return env, fmt.Errorf("invalid envelope: token for step %q found in the stream of step %q", env.Step, r.step.Name)
	case tid.Partition != m.Part:
		return env, fmt.Errorf("invalid envelope: task %s belongs to another partition than %s", env.Task, m.Part.Tag())
	case env.Priority != m.Priority:
		return env, fmt.Errorf("invalid envelope: token of priority %s found in the stream of priority %s", env.Priority, m.Priority)
	case !env.PV.Compatible(r.p.Version):
		return env, fmt.Errorf("invalid envelope: pipeline version %s is not compatible with the loaded %s", env.PV, r.p.Version)
	}
	return env, nil
}

func (r *stepRunner) deadLetter(m msgRef, reason string) {
	r.failed.Add(1)
	ctx, cancel := context.WithTimeout(r.s.engineCtxOr(), 5*time.Second)
	defer cancel()
	err := r.s.c.DeadLetterEntry(ctx, m.Part, m.Priority, r.step.Name, m.ID, m.Values, reason, r.s.cfg.ID)
	ev := r.log.Warn().Str("entry", m.ID).Str("reason", reason)
	if err != nil {
		ev = r.log.Error().Err(err).Str("entry", m.ID).Str("reason", reason)
	}
	ev.Msg("stream entry moved to dead letters")
}
