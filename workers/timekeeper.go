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
}

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
// token past its queue_timeout timed out (in batches). warn gets failures.
func keepTime(ctx context.Context, c *dsat.Client, sweeps []timeSweep, warn func(key string, ev *zerolog.Event, msg string), log *zerolog.Logger) {
	for _, sw := range sweeps {
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
			for more := true; more && ctx.Err() == nil; {
				var n int
				var err error
				n, more, err = c.TimeoutQueued(ctx, sw.part, step, keepTimeBatch)
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
	}
}

// TimeKeeper cancels the tasks of every loaded pipeline whose deadline
// passed and times out the tokens that waited past their step's
// queue_timeout, about once a second. Satellites do the same for the
// partitions they serve; dsat serve runs a TimeKeeper so that deadlines
// and queue timeouts hold while no satellite runs a step. Any number may
// run at once.
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

// Run keeps time until ctx ends.
func (k *TimeKeeper) Run(ctx context.Context) {
	var sweeps []timeSweep
	for _, p := range k.c.Pipelines() {
		steps := queueTimeoutSteps(p, func(string) bool { return true })
		for n := 0; n < p.Partitions; n++ {
			sweeps = append(sweeps, timeSweep{part: p.Partition(n), steps: steps})
		}
	}
	every(ctx, k.interval, func(ctx context.Context) { keepTime(ctx, k.c, sweeps, k.logs.write, &k.log) })
}
