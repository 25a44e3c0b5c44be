package workers

import (
	"context"
	"math"
	"sync"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// progressInterval is the least time between two progress writes of one
// token: at most 5 a second.
const progressInterval = 200 * time.Millisecond

// Progress reports how far the handler running under ctx has come: value
// in [0, 1] (out of range: clamped; NaN or ±Inf: ignored with a log line)
// and a short message (cut to 256 bytes, made valid UTF-8). It becomes a
// PROGRESS event and the step's steps.<name>.progress in the task's state.
// Reports are throttled to 5 a second per token: one that comes too soon
// is written when the throttle allows, replaced by any later one, and the
// last is always written before the handler's result (so it precedes END):
// when the handler returns, a report still kept is written at once, not
// held back for the throttle (one write more at the end at most).
// Outside a handler (no token in ctx) it does nothing. A handler that never
// reports costs nothing: no Redis call, no allocation.
func Progress(ctx context.Context, value float64, message string) {
	if j, _ := ctx.Value(progressKey{}).(*job); j != nil {
		j.progress(value, message, false)
	}
}

// progressAsync is Progress for reports read from a process (exec's file
// descriptor 3, a process worker's lines): it never waits for Redis.
func progressAsync(ctx context.Context, value float64, message string) {
	if j, _ := ctx.Value(progressKey{}).(*job); j != nil {
		j.progress(value, message, true)
	}
}

type progressKey struct{}

// progressCtx is the parent of a handler's context: j.ctx, which also
// carries the job for Progress. It lives inside the job, so it costs no
// allocation.
type progressCtx struct {
	context.Context
	j *job
}

func (c *progressCtx) Value(k any) any {
	if k == (progressKey{}) {
		return c.j
	}
	return c.Context.Value(k)
}

// progressState is a job's throttle. mu is held while a report is
// written, so writes are in order and endProgress waits for one in flight.
type progressState struct {
	mu      sync.Mutex
	closed  bool      // the handler returned: nothing more is written
	last    time.Time // the last write
	pending bool      // value and message wait for the throttle
	value   float64
	message string
	timer   *time.Timer
	armed   bool
}

// progress takes a report: it writes it now (async: soon, from the timer)
// when the last write is progressInterval ago, else keeps it for then.
func (j *job) progress(value float64, message string, async bool) {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		j.r.s.logLimited(j.r.name()+"/progress", j.r.log.Warn().Str("task", j.d.Task).Float64("progress", value),
			"progress ignored: not a number in [0, 1]")
		return
	}
	p := &j.prog
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	now := time.Now()
	wait := progressInterval - now.Sub(p.last)
	if p.last.IsZero() {
		wait = 0
	}
	if wait > 0 || async {
		p.pending, p.value, p.message = true, value, message
		if !p.armed {
			p.armed = true
			if p.timer == nil {
				p.timer = time.AfterFunc(max(wait, 0), j.progressDue)
			} else {
				p.timer.Reset(max(wait, 0))
			}
		}
		return
	}
	p.pending, p.last = false, now
	j.writeProgress(value, message)
}

// progressDue writes the report kept for the throttle.
func (j *job) progressDue() {
	p := &j.prog
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = false
	if p.closed || !p.pending {
		return
	}
	p.pending, p.last = false, time.Now()
	j.writeProgress(p.value, p.message)
}

// endProgress runs when the handler returned, before its result is
// recorded: it writes the report still kept for the throttle, waits for
// one being written, and ends the job's reporting.
func (j *job) endProgress() {
	p := &j.prog
	p.mu.Lock()
	defer p.mu.Unlock()
	p.closed = true
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.pending {
		p.pending = false
		j.writeProgress(p.value, p.message)
	}
}

// writeProgress records one report (under j.prog.mu). A token not begun
// yet gets its ACK in the same call (at the handler's start).
func (j *job) writeProgress(value float64, message string) {
	d := j.d
	d.Started = j.started
	s := j.r.s
	ctx, cancel := context.WithTimeout(s.engineCtxOr(), 5*time.Second)
	defer cancel()
	o, err := s.c.Progress(ctx, d, value, message)
	switch {
	case err != nil:
		s.logLimited(j.r.name()+"/progress", j.r.log.Warn().Err(err).Str("task", d.Task), "progress not recorded")
	case o != dsat.Applied:
		j.r.log.Debug().Str("task", d.Task).Str("token", d.Token).Msg("progress not recorded: the token is no longer live")
	}
}
