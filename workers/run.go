package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"strings"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/tracing"
)

// run is the state-machine wrapper around one handler call: begin, run
// the handler under the step timeout, then complete or fail. A token whose
// run is interrupted by shutdown is left un-acknowledged for the reclaimer.
func (r *stepRunner) run(j *job) {
	defer r.s.work.Done()
	defer r.pool.end()
	defer r.s.jobs.remove(j)
	defer j.cancel()
	defer r.lim.release(j)
	d := j.d
	log := r.log.With().Str("task", d.Task).Str("token", d.Token).Int("attempt", d.Attempt).Logger()
	task := &dsat.Task{ID: d.Task, Pipeline: r.p.Name, Version: r.p.Version, Step: r.step.Name, With: r.step.With,
		Token: d.Token, Attempt: d.Attempt, Payload: d.Payload, ContentType: d.CT, Trace: d.Trace}
	if j.queueWait > 0 {
		r.queueTimedOut(j, log)
		return
	}
	if r.step.Pipeline != "" {
		r.startChild(j, log)
		return
	}
	started := time.Now()
	j.started = started
	hctx, cancel := context.WithTimeout(&j.pc, r.step.Timeout)
	hctx, span := r.startSpan(hctx, j, started)
	outcome, errText := "interrupted", ""
	if span != nil {
		task.Trace = tracing.Traceparent(span.SpanContext())
		defer func() { endSpan(span, outcome, errText) }()
	}
	res, herr := r.call(log.WithContext(hctx), task, &log)
	j.endProgress() // a report kept for the throttle goes before the result
	timedOut := errors.Is(hctx.Err(), context.DeadlineExceeded) && j.ctx.Err() == nil
	cancel()
	if !j.settle() {
		j.d.Started = started // not begun: Complete or Fail writes the ACK
		if !j.grantAt.IsZero() {
			j.d.Started = j.grantAt // at its limiter's grant (limits.go)
		}
	}
	if j.dropped.Load() {
		outcome = "dropped"
		log.Debug().Msg("token no longer wanted (task cancelled or finished); result ignored")
		return
	}
	if herr != nil && j.ctx.Err() != nil && !j.cancelled.Load() {
		errText = herr.Error()
		log.Warn().Err(herr).Msg("handler interrupted by shutdown; the token stays pending for the reclaimer")
		return
	}
	if herr == nil && !json.Valid(res.Output) {
		herr = fmt.Errorf("handler output is not valid JSON (%d bytes)", len(res.Output))
	}
	if herr == nil && r.s.cfg.beforeComplete != nil {
		r.s.cfg.beforeComplete(task)
	}
	if herr != nil {
		errText = herr.Error()
	}
	outcome = r.finish(j, res, herr, timedOut, log)
	r.stats.observe(outcome, started, time.Since(started), d.TS)
	r.breakerOutcome(outcome)
	if r.s.cfg.OnResult != nil {
		r.s.cfg.OnResult(r.p.Name, r.step.Name, outcome, time.Since(started))
	}
}

// finish records the handler's result with Complete or Fail and returns the
// outcome label.
func (r *stepRunner) finish(j *job, res dsat.Result, herr error, timedOut bool, log zerolog.Logger) string {
	d := j.d
	if herr == nil {
		_, err := r.completer.complete(dsat.Completion{Delivery: d, Output: res.Output, Label: res.Route})
		if err == nil {
			r.processed.Add(1)
			return "ok"
		}
		if !errors.Is(err, dsat.ErrNoRoute) && !errors.Is(err, dsat.ErrMapOutput) {
			log.Error().Err(err).Msg("complete failed; the token stays pending for the reclaimer")
			return "error"
		}
		herr = fmt.Errorf("%w: %w", SkipRetry, err)
	}
	f := dsat.Failure{Message: herr.Error(), Timeout: timedOut}
	label := "error"
	var snooze *SnoozeError
	switch {
	case j.cancelled.Load():
		f.Message, label = "task cancelled", "cancelled"
	case timedOut:
		f.Message, label = fmt.Sprintf("handler passed its timeout of %s", r.step.Timeout), "timeout"
	case errors.As(herr, &snooze):
		f.Snooze, label = snooze.Delay, "snooze"
	case errors.Is(herr, SkipRetry):
		f.Final = true
		// The reason, without the marker's own text ("skip retry: ").
		f.Message = strings.TrimPrefix(f.Message, SkipRetry.Error()+": ")
	case errors.Is(herr, errPanic):
		label = "panic"
	}
	var mode dsat.FailMode
	err := r.s.engine(func(ctx context.Context) (err error) { _, mode, err = r.s.c.Fail(ctx, d, f); return err })
	if err != nil {
		log.Error().Err(err).Msg("fail failed; the token stays pending for the reclaimer")
		return label
	}
	if label != "snooze" && label != "cancelled" {
		r.failed.Add(1)
	}
	if mode == dsat.FailDead {
		r.stats.dead.Add(1)
	}
	log.Info().Str("outcome", label).Str("mode", string(mode)).Str("error", f.Message).Msg("handler failed")
	return label
}

// queueTimedOut fails a token that waited in the stream past its step's
// queue_timeout, without running its handler (TIMEOUT, no ACK).
func (r *stepRunner) queueTimedOut(j *job, log zerolog.Logger) {
	f := dsat.Failure{Timeout: true, NotRun: true, Message: dsat.QueueTimeoutMessage(r.step.QueueTimeout, j.queueWait)}
	_, span := r.startSpan(j.ctx, j, time.Now())
	defer endSpan(span, "queue_timeout", f.Message)
	var mode dsat.FailMode
	err := r.s.engine(func(ctx context.Context) (err error) { _, mode, err = r.s.c.Fail(ctx, j.d, f); return err })
	if err != nil {
		log.Error().Err(err).Msg("fail failed; the token stays pending for the reclaimer")
		return
	}
	r.failed.Add(1)
	r.stats.failed.Add(1)
	if mode == dsat.FailDead {
		r.stats.dead.Add(1)
	}
	if r.s.cfg.OnResult != nil {
		r.s.cfg.OnResult(r.p.Name, r.step.Name, "queue_timeout", 0)
	}
	log.Warn().Str("outcome", "queue_timeout").Str("mode", string(mode)).Str("error", f.Message).Msg("token not picked up in time")
}

var errPanic = errors.New("panic")

// call runs the handler, turning a panic into an error; the stack goes to
// the log only, never into the task's state or events.
func (r *stepRunner) call(ctx context.Context, t *dsat.Task, log *zerolog.Logger) (res dsat.Result, err error) {
	defer func() {
		if p := recover(); p != nil {
			log.Error().Str("panic", fmt.Sprint(p)).Str("stack", string(debug.Stack())).Msg("handler panicked")
			err = fmt.Errorf("%w: %v", errPanic, p)
		}
	}()
	return r.h.Handle(ctx, t)
}

// engine runs an engine call (Begin, Complete, Fail) with the retry policy
// of every engine call (inBatches, with one item): each is idempotent, so
// repeating one after an unknown outcome is safe. It uses the engine
// context, which outlives shutdown's handler cancellation, so a finished
// handler's result is still recorded.
func (s *Satellite) engine(call func(ctx context.Context) error) error {
	var err error
	inBatches(s.engineCtxOr(), []struct{}{{}}, func(ctx context.Context, one []struct{}) []struct{} {
		if err = call(ctx); retryable(err) && s.engineCtxOr().Err() == nil {
			return one
		}
		return nil
	})
	return err
}

// retryable reports whether an engine call may be repeated after err: a
// failure of Redis or of the way to it may pass (dsat.Temporary); an
// answer about the input, the task or the pipeline will not.
func retryable(err error) bool { return dsat.Temporary(err) }

// engineCtxOr is the engine context, or Background before Start.
func (s *Satellite) engineCtxOr() context.Context {
	if s.engineCtx == nil {
		return context.Background()
	}
	return s.engineCtx
}
