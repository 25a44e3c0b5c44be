package workers

import (
	"context"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
)

// keepTimeBatch is the most tasks or tokens handled per script call.
const keepTimeBatch = 100

// timeSweep is the time keeping of one partition: tasks past their
// deadline, and tokens of steps (those with a queue_timeout) that no
// worker read within it.
type timeSweep struct {
	part  dsat.Partition
	steps []string
	// children: the pipeline has sub-pipeline steps (subpipe.go).
	children bool
	// ixCursor is where the task index pruning goes on (dsat.PruneIndex),
	// ixNext when it is due again.
	ixCursor string
	ixNext   time.Time
}

// The task index pruning of a partition runs every pruneEvery (however
// often the time keeper runs): batches of pruneBatch members while at
// least a quarter of a batch was expired, at most pruneRounds of them
// (50,000 members per partition and time keeper every 5 s; a backlog is
// taken up in the next runs). An index holds nothing but needless members
// until then, which pages leave out.
const (
	pruneEvery  = 5 * time.Second
	pruneBatch  = 500
	pruneRounds = 100
)

// queueTimeoutSteps lists the steps of p with a queue_timeout, among
// those serve accepts.
func queueTimeoutSteps(p *dsat.Pipeline, serve func(step string) bool) []string {
	var out []string
	for _, name := range p.Order {
		if p.Steps[name].QueueTimeout > 0 && serve(name) {
			out = append(out, name)
		}
	}
	return out
}

// keepTime runs each sweep once: every overdue task cancelled, every
// token past its queue_timeout timed out (in batches), but not those of a
// step that held says is held (paused, breaker open, next step full) or
// was within its queue_timeout, and the task index members of expired
// tasks removed. count gets the failed attempts and dead
// tokens of each step's timed-out tokens (for the step statistics); warn
// gets failures.
func keepTime(ctx context.Context, c *dsat.Client, sweeps []timeSweep, held func(p dsat.Partition, step string) bool,
	count func(p dsat.Partition, step string, failed, dead int),
	warn func(key string, ev *zerolog.Event, msg string), log *zerolog.Logger) {
	for i := range sweeps {
		sw := &sweeps[i]
		if sw.children {
			settleChildren(ctx, c, sw.part, warn, log)
		}
		for more := true; more && ctx.Err() == nil; {
			var n int
			var err error
			n, more, err = c.CancelOverdue(ctx, sw.part, keepTimeBatch)
			if err != nil {
				if ctx.Err() == nil {
					warn("deadline", log.Warn().Err(err).Str("partition", sw.part.Tag()), "cancel overdue tasks failed")
				}
				break
			}
			if n > 0 {
				log.Info().Int("tasks", n).Str("partition", sw.part.Tag()).Msg("tasks past their deadline cancelled")
			}
		}
		for _, step := range sw.steps {
			if held(sw.part, step) {
				continue
			}
			for more := true; more && ctx.Err() == nil; {
				var n, dead int
				var err error
				n, dead, more, err = c.TimeoutQueued(ctx, sw.part, step, keepTimeBatch)
				if n > 0 {
					count(sw.part, step, n, dead)
				}
				if err != nil {
					if ctx.Err() == nil {
						warn("queue-timeout", log.Warn().Err(err).Str("partition", sw.part.Tag()).Str("step", step), "time out queued tokens failed")
					}
					break
				}
				if n > 0 {
					log.Warn().Int("tokens", n).Str("partition", sw.part.Tag()).Str("step", step).
						Msg("tokens not picked up within the step's queue_timeout: TIMEOUT")
				}
			}
		}
		pruneIndex(ctx, c, sw, warn, log)
	}
}

// pruneIndex removes the task index members of the partition's expired
// tasks (dsat.Client.PruneIndex), going on from the sweep's cursor.
func pruneIndex(ctx context.Context, c *dsat.Client, sw *timeSweep, warn func(key string, ev *zerolog.Event, msg string), log *zerolog.Logger) {
	now := time.Now()
	if now.Before(sw.ixNext) {
		return
	}
	sw.ixNext = now.Add(pruneEvery)
	for round := 0; round < pruneRounds && ctx.Err() == nil; round++ {
		next, n, err := c.PruneIndex(ctx, sw.part, sw.ixCursor, pruneBatch)
		if err != nil {
			if ctx.Err() == nil {
				warn("index-prune", log.Warn().Err(err).Str("partition", sw.part.Tag()), "prune task index failed")
			}
			return
		}
		sw.ixCursor = next
		if next == "" || n < pruneBatch/4 {
			return
		}
	}
}

// TimeKeeper cancels the tasks of every loaded pipeline whose deadline
// passed and times out the tokens that waited past their step's
// queue_timeout, about once a second. Satellites do the same for the
// partitions they serve; dsat serve runs a TimeKeeper so that deadlines
// and queue timeouts hold while no satellite runs a step. Any number may
// run at once. The failed attempts and dead tokens of its queue timeouts
// go to the step statistics (dsat.RecordStats) at the end of the round
// that made them: one write, only in a round that timed a token out.
type TimeKeeper struct {
	c        *dsat.Client
	log      zerolog.Logger
	interval time.Duration
	logs     logLimiter
}

// NewTimeKeeper returns a time keeper for c's pipelines that looks every
// interval (1s when not positive).
func NewTimeKeeper(c *dsat.Client, log zerolog.Logger, interval time.Duration) *TimeKeeper {
	if interval <= 0 {
		interval = time.Second
	}
	return &TimeKeeper{c: c, log: log.With().Str("component", "timekeeper").Logger(), interval: interval}
}

// Run keeps time until ctx ends. It also moves due retries back to their
// steps (as satellites do for the steps they run), so a token retried
// after a queue timeout reaches its step again — and times out again —
// while no satellite runs that step.
func (k *TimeKeeper) Run(ctx context.Context) {
	var sweeps []timeSweep
	anyQT := false
	// by "name@X.Y": a partition's own version, whose steps it sweeps (a
	// draining version may have a step its successor has not).
	byAPI := map[string]*dsat.Pipeline{}
	for _, p := range k.c.Pipelines() {
		byAPI[p.Name+"@"+p.Version.API()] = p
		steps := queueTimeoutSteps(p, func(string) bool { return true })
		anyQT = anyQT || len(steps) > 0
		for n := 0; n < p.Partitions; n++ {
			sweeps = append(sweeps, timeSweep{part: p.Partition(n), steps: steps, children: p.HasSubPipelines()})
		}
	}
	heldAt := map[string]time.Time{} // pipeline/step -> when last seen held
	var samples []dsat.StepSample    // this round's queue timeouts
	every(ctx, k.interval, func(ctx context.Context) {
		for _, sw := range sweeps {
			if _, err := k.c.Promote(ctx, sw.part, keepTimeBatch); err != nil && ctx.Err() == nil {
				k.logs.write("promote", k.log.Warn().Err(err).Str("partition", sw.part.Tag()), "promote retries failed")
			}
		}
		if anyQT {
			k.noteHolds(ctx, heldAt)
		}
		keepTime(ctx, k.c, sweeps, func(p dsat.Partition, step string) bool {
			pipe := byAPI[p.Pipeline+"@"+p.API]
			if pipe == nil || pipe.Steps[step] == nil {
				return true
			}
			st := pipe.Steps[step]
			return k.c.Config().Now().Sub(heldAt[p.Pipeline+"/"+step]) < st.QueueTimeout
		}, func(p dsat.Partition, step string, failed, dead int) {
			samples = append(samples, dsat.StepSample{Pipeline: p.Pipeline, Step: step, Failed: int64(failed), Dead: int64(dead)})
		}, k.logs.write, &k.log)
		if len(samples) > 0 {
			k.flushStats(ctx, samples)
			samples = samples[:0]
		}
	})
}

// flushStats writes the round's counts, also when ctx just ended (the
// round's work is done and its counts are due).
func (k *TimeKeeper) flushStats(ctx context.Context, samples []dsat.StepSample) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := k.c.RecordStats(ctx, k.c.Config().Now(), samples); err != nil {
		k.logs.write("stats", k.log.Warn().Err(err), "write step stats failed; this round's counts are dropped")
	}
}

// noteHolds notes now as the last hold of every step that is paused or
// whose breaker is not closed. A failed read counts every step as held
// (no token is timed out on a guess).
func (k *TimeKeeper) noteHolds(ctx context.Context, heldAt map[string]time.Time) {
	now := k.c.Config().Now()
	paused, err := k.c.ListPaused(ctx)
	breakers, err2 := k.c.Breakers(ctx)
	for _, p := range k.c.Pipelines() {
		for _, step := range p.Order {
			_, open := breakers[p.Name+"/"+step]
			if err != nil || err2 != nil || paused.Step(p.Name, step) || open {
				heldAt[p.Name+"/"+step] = now
			}
		}
	}
}
