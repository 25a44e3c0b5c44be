package workers

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
)

// Sub-pipeline steps (issue 17): a token of a step with pipeline: runs no
// handler. The worker that reads it submits the child task and parks the
// token (dsat.Client.StartChild); the time keeping of the partition
// (keepTime, about once a second) ends it when the child ends
// (dsat.Client.SettleChildren).

// startChild runs a sub-pipeline step's token: the child is submitted and
// the token parked, or, when the submission is refused, the token fails
// like a handler error (retried by the step's policy).
func (r *stepRunner) startChild(j *job, log zerolog.Logger) {
	started := time.Now()
	if !j.settle() {
		j.d.Started = started
	}
	if j.dropped.Load() {
		return
	}
	var child string
	var o dsat.Outcome
	err := r.s.engine(func(ctx context.Context) (err error) { child, o, err = r.s.c.StartChild(ctx, j.d); return err })
	if err == nil {
		r.processed.Add(1)
		log.Debug().Str("child", child).Str("outcome", o.String()).Msg("child task submitted")
		return
	}
	if retryable(err) {
		log.Error().Err(err).Msg("start child failed; the token stays pending for the reclaimer")
		return
	}
	f := dsat.Failure{Message: err.Error(), Final: errors.Is(err, dsat.ErrPipelineNotFound)}
	var mode dsat.FailMode
	if ferr := r.s.engine(func(ctx context.Context) (err error) { _, mode, err = r.s.c.Fail(ctx, j.d, f); return err }); ferr != nil {
		log.Error().Err(ferr).Msg("fail failed; the token stays pending for the reclaimer")
		return
	}
	r.failed.Add(1)
	log.Warn().Err(err).Str("mode", string(mode)).Msg("child task not submitted")
}

// settleChildren ends the sub-pipeline tokens of a partition whose child
// ended (and cancels the children of cancelled tasks).
func settleChildren(ctx context.Context, c *dsat.Client, part dsat.Partition,
	warn func(key string, ev *zerolog.Event, msg string), log *zerolog.Logger) {
	n, err := c.SettleChildren(ctx, part)
	if err != nil && ctx.Err() == nil {
		warn("children", log.Warn().Err(err).Str("partition", part.Tag()), "settle sub-pipeline steps failed")
	}
	if n > 0 {
		log.Debug().Int("tokens", n).Str("partition", part.Tag()).Msg("sub-pipeline steps ended with their child tasks")
	}
}
