package dsat

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// The engine methods below are what a satellite calls around each handler
// run: Begin, then Complete or Fail. Each is one atomic script call and is
// idempotent per (task, token, attempt): a redelivered token or a call that
// go-redis retried after a lost reply changes nothing the second time.

// Delivery is a token as read from a step stream by one worker.
type Delivery struct {
	Envelope
	// EntryID is the stream entry id ("" when not from a stream).
	EntryID string
	// Worker is the consumer name of the worker holding the token.
	Worker string
	// Started is when the handler started. Complete and Fail record the
	// token's ACK at this time when no Begin call was made for it (a
	// handler that returns within the satellite's begin window needs no
	// call of its own); zero means the time of the call.
	Started time.Time
}

// startedArg is Started as a script argument: ms, or "" when unknown.
func (d Delivery) startedArg() string {
	if d.Started.IsZero() {
		return ""
	}
	return ms(d.Started)
}

// Outcome says what an engine call did.
type Outcome int

const (
	// Applied: the task's state advanced.
	Applied Outcome = iota + 1
	// AlreadyApplied: this exact change was made before (a redelivery or a
	// retried call); nothing changed now. For Begin: this worker already
	// began the token, so the handler may run.
	AlreadyApplied
	// Dropped: the token is no longer wanted (task cancelled, finished,
	// expired, or the token stale); its entry was acknowledged. Do not run
	// the handler.
	Dropped
)

func (o Outcome) String() string {
	switch o {
	case Applied:
		return "applied"
	case AlreadyApplied:
		return "already applied"
	case Dropped:
		return "dropped"
	}
	return "unknown"
}

// maxErrorText bounds the error text stored in state, events and dead
// letters.
const maxErrorText = 2048

// deliveryPartition is the partition of a delivery's task. It also checks
// the worker name, which events store on one line.
func deliveryPartition(d Delivery) (Partition, error) {
	if strings.ContainsAny(d.Worker, "\r\n|") {
		return Partition{}, fmt.Errorf("dsat: worker name %q holds a line break or a |", d.Worker)
	}
	tid, err := ParseTaskID(d.Task)
	return tid.Partition, err
}

func (c *Client) taskKeys(d Delivery) (Partition, []string, error) {
	p, err := deliveryPartition(d)
	if err != nil {
		return Partition{}, nil, err
	}
	return p, []string{c.keys.Task(p, d.Task), c.keys.TaskLog(p, d.Task), c.keys.Firehose(p), c.keys.StepAt(p, d.Step, d.Priority)}, nil
}

// Begin records that worker took the token (event ACK). Run the handler
// only on Applied or AlreadyApplied.
func (c *Client) Begin(ctx context.Context, d Delivery) (Outcome, error) {
	outs, errs := c.BeginBatch(ctx, []Delivery{d})
	return outs[0], errs[0]
}

// Complete stores the handler's output (JSON), runs the step's routers,
// queues the next tokens and ends the task when nothing is left alive. A
// token that was never begun gets its ACK (at d.Started) in the same call. A
// switch whose label matches no route and that has no default returns an
// error wrapping ErrNoRoute and writes nothing: fail the token then.
func (c *Client) Complete(ctx context.Context, d Delivery, output []byte, label string) (Outcome, error) {
	outs, errs := c.CompleteBatch(ctx, []Completion{{Delivery: d, Output: output, Label: label}})
	return outs[0], errs[0]
}

func beginOutcome(code int64) Outcome {
	switch code {
	case 1:
		return Applied
	case 2:
		return AlreadyApplied
	}
	return Dropped
}

func completeOutcome(code int64, label string) (Outcome, error) {
	switch code {
	case 1:
		return Applied, nil
	case 0:
		return AlreadyApplied, nil
	case -1, -2:
		return Dropped, nil
	case -4:
		return 0, fmt.Errorf("%w: label %q and no default route", ErrNoRoute, label)
	}
	return 0, fmt.Errorf("dsat: complete: unexpected reply %d", code)
}

// Failure describes why a handler run did not complete.
type Failure struct {
	// Timeout reports TIMEOUT instead of ERROR.
	Timeout bool
	// Message is the error text shown in state, events and dead letters.
	Message string
	// Final sends the token straight to the dead letters (no retry).
	Final bool
	// Snooze, when positive, runs the token again after this delay without
	// using up an attempt.
	Snooze time.Duration
	// NotRun says no handler ran the token (it waited past the step's
	// queue_timeout): no ACK is recorded for it.
	NotRun bool

	// undelivered: the token was never read by a worker (the time keeper,
	// TimeoutQueued); nothing is done if a worker read it meanwhile.
	undelivered bool
}

// FailMode is what Fail did with the token.
type FailMode string

// Fail modes.
const (
	FailRetry  FailMode = "retry"
	FailSnooze FailMode = "snooze"
	FailDead   FailMode = "dead"
)

// Fail records a failed run: a retry after backoff while attempts remain,
// else the token goes to the dead letters (and the task ends DEAD when
// nothing else is alive).
func (c *Client) Fail(ctx context.Context, d Delivery, f Failure) (Outcome, FailMode, error) {
	keys, args, mode, err := c.failCall(d, f)
	if err != nil {
		return 0, "", err
	}
	r, err := c.runScript(ctx, lua.Fail, keys, args...)
	if err != nil {
		return 0, "", err
	}
	o, err := failOutcome(r)
	return o, mode, err
}

func (c *Client) failCall(d Delivery, f Failure) ([]string, []any, FailMode, error) {
	p, keys, err := c.taskKeys(d)
	if err != nil {
		return nil, nil, "", err
	}
	cp, err := c.pipelineFor(p)
	if err != nil {
		return nil, nil, "", err
	}
	step, ok := cp.p.Steps[d.Step]
	if !ok {
		return nil, nil, "", fmt.Errorf("%w: pipeline %s %s has no step %q", ErrStepNotFound, p.Pipeline, p.API, d.Step)
	}
	now := c.cfg.Now()
	mode, due := FailRetry, now
	switch {
	case f.Snooze > 0:
		mode, due = FailSnooze, now.Add(f.Snooze)
	case f.Final || d.Attempt >= step.Attempts():
		mode = FailDead
	default:
		due = now.Add(step.Backoff.Delay(d.Attempt+1, nil))
	}
	ev := EventError
	if f.Timeout {
		ev = EventTimeout
	}
	msg := f.Message
	if len(msg) > maxErrorText {
		msg = msg[:maxErrorText] + "..."
	}
	keys = append(keys, c.keys.Retry(p), c.keys.Dead(p), c.keys.TaskIndex(p))
	args := []any{d.Task, d.Token, d.Attempt, d.EntryID, d.Step, d.Worker, ms(now),
		c.cfg.FirehoseMaxLen, c.cfg.Retention.Milliseconds(), EnvelopeVersion.API(),
		ev, msg, string(mode), ms(due), string(d.Payload), d.startedArg(), f.never()}
	keys, args = c.onFailureArgs(cp, p, d.Priority, keys, args)
	if mj := cp.failMapJoin[d.Step]; mj != nil {
		args = append(args, mj.args...)
		for _, s := range mj.streams {
			keys = append(keys, c.keys.StepAt(p, s, d.Priority))
		}
	}
	return keys, args, mode, nil
}

// never is fail.lua's ARGV[17]: how a token that no handler ran came to fail.
func (f Failure) never() string {
	switch {
	case f.undelivered:
		return "u"
	case f.NotRun:
		return "q"
	}
	return ""
}

func failOutcome(r []any) (Outcome, error) {
	switch replyCode(r) {
	case 2:
		return Dropped, nil // undelivered only, and delivered meanwhile
	case 1:
		return Applied, nil
	case 0:
		return AlreadyApplied, nil
	case -1, -2:
		return Dropped, nil
	}
	return 0, fmt.Errorf("dsat: fail: unexpected reply %v", r)
}

// Promote moves up to limit due retries of partition p back to their step
// streams and returns how many moved. Running it from several satellites at
// once is harmless.
func (c *Client) Promote(ctx context.Context, p Partition, limit int) (int, error) {
	cp, err := c.pipelineFor(p)
	if err != nil {
		return 0, err
	}
	keys := []string{c.keys.Retry(p), c.keys.Dead(p)}
	args := []any{ms(c.cfg.Now()), limit}
	for _, s := range cp.allSteps {
		args = append(args, s)
	}
	keys = append(keys, c.levelStreams(p, cp.allSteps)...)
	r, err := c.runScript(ctx, lua.Promote, keys, args...)
	if err != nil {
		return 0, err
	}
	return int(replyCode(r)), nil
}

// DeadLetterEntry moves a stream entry that is not a valid token (or whose
// payload was lost) to the dead letters with the reason, and acknowledges
// and deletes it. Nothing is dropped silently, and nothing is left stuck:
// an entry that names a live token of a known task ends that token as a
// final failure (ERROR, then DEAD when nothing else is alive; the task
// becomes failed and `retry` re-drives it), recorded by worker.
//
// The entry is in the stream of step's priority level (Entry.Priority).
func (c *Client) DeadLetterEntry(ctx context.Context, p Partition, level Priority, step, entryID string, values map[string]any, reason, worker string) error {
	if ok, err := c.rejectToken(ctx, level, step, entryID, values, reason, worker); err != nil || ok {
		return err
	}
	raw, _ := json.Marshal(values)
	if len(raw) > maxErrorText {
		raw = append(raw[:maxErrorText], "..."...)
	}
	task := entryValues(values)[fTask]
	if _, err := ParseTaskID(task); err != nil {
		task = ""
	}
	if len(reason) > maxErrorText {
		reason = reason[:maxErrorText] + "..."
	}
	stream := c.keys.StepAt(p, step, level)
	_, err := c.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.XAdd(ctx, &redis.XAddArgs{Stream: c.keys.Dead(p), Values: []any{
			"task", task, "pipeline", p.Pipeline, "step", step, "entry", entryID,
			"reason", reason, "raw", string(raw), "at", ms(c.cfg.Now()),
		}})
		pipe.XAck(ctx, stream, step, entryID)
		pipe.XDel(ctx, stream, entryID)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dsat: dead-letter entry %s: %w", entryID, err)
	}
	return nil
}

// rejectToken ends the token a rejected entry names, through the fail
// script (a final failure); false when the entry names no live token.
func (c *Client) rejectToken(ctx context.Context, level Priority, step, entryID string, values map[string]any, reason, worker string) (bool, error) {
	vals := entryValues(values) // either format, unchecked
	str := func(k string) string { return vals[k] }
	task, token := str(fTask), str(fToken)
	if _, err := ParseTaskID(task); err != nil || !validTokenID(token) || strings.ContainsAny(worker, "\r\n|") {
		return false, nil
	}
	attempt, err := strconv.Atoi(str(fAttempt))
	if err != nil || attempt < 1 || attempt > 1000 {
		attempt = 0 // the token's current attempt
	}
	payload := []byte(str(fPayload))
	if c.CheckPayload(payload) != nil {
		payload = []byte("null") // a re-drive must not carry what was refused
	}
	d := Delivery{Envelope: Envelope{Task: task, Step: step, Token: token, Attempt: attempt, Payload: payload, Priority: level},
		EntryID: entryID, Worker: worker}
	o, _, err := c.Fail(ctx, d, Failure{Message: reason, Final: true})
	if err != nil {
		return false, fmt.Errorf("dsat: end the token of rejected entry %s: %w", entryID, err)
	}
	return o == Applied, nil
}

// Renew extends the claim of a running token (resets its idle time) while
// d.Worker still owns it. It returns false once the token was reclaimed by
// another consumer or acknowledged; stop renewing then.
func (c *Client) Renew(ctx context.Context, d Delivery) (bool, error) {
	tid, err := ParseTaskID(d.Task)
	if err != nil {
		return false, err
	}
	n, err := lua.Renew.Run(ctx, c.rdb, []string{c.keys.StepAt(tid.Partition, d.Step, d.Priority)}, d.Step, d.Worker, d.EntryID).Int()
	if err != nil {
		return false, fmt.Errorf("dsat: renew: %w", err)
	}
	return n == 1, nil
}

// batchGroup is one script call of a batch: tokens of one partition, step
// and worker.
type batchGroup struct {
	keys  []string
	args  []any
	items []int // indexes into the caller's slice
}

// groupKey is what the tokens of one script call share.
type groupKey struct {
	part         Partition
	step, worker string
	level        Priority // the tokens' streams (Keys.StepAt)
}

// BeginBatch is Begin for many tokens: one script call per partition and
// step (begin.lua takes a batch), all sent in one round trip. It returns
// each token's outcome or error.
func (c *Client) BeginBatch(ctx context.Context, ds []Delivery) ([]Outcome, []error) {
	return c.BeginBatchAt(ctx, ds, c.cfg.Now())
}

// BeginBatchAt is BeginBatch with the ACKs' time given: a step with
// limits begins its tokens at the time its limiter granted them, so the
// ACKs keep the limiter's windows exactly (see AcquireLimits).
func (c *Client) BeginBatchAt(ctx context.Context, ds []Delivery, at time.Time) ([]Outcome, []error) {
	outs, errs := make([]Outcome, len(ds)), make([]error, len(ds))
	groups := c.beginCalls(ds, errs, at)
	replies, rerrs := c.pipelineScripts(ctx, lua.Begin, len(groups), func(g int) ([]string, []any) {
		return groups[g].keys, groups[g].args
	})
	for g, grp := range groups {
		for k, i := range grp.items {
			if errs[i] = rerrs[g]; errs[i] == nil {
				code, _ := replies[g][k].(int64)
				outs[i] = beginOutcome(code)
			}
		}
	}
	return outs, errs
}

// beginCalls groups deliveries into begin.lua calls; a delivery with a bad
// task id gets its error in errs.
func (c *Client) beginCalls(ds []Delivery, errs []error, at time.Time) []*batchGroup {
	var groups []*batchGroup
	index := map[groupKey]*batchGroup{}
	now := ms(at)
	for i, d := range ds {
		p, err := deliveryPartition(d)
		if err != nil {
			errs[i] = err
			continue
		}
		gk := groupKey{p, d.Step, d.Worker, d.Priority}
		g, ok := index[gk]
		if !ok {
			g = &batchGroup{keys: []string{c.keys.Firehose(p), c.keys.StepAt(p, d.Step, d.Priority), c.keys.TaskIndex(p)},
				args: []any{now, c.cfg.FirehoseMaxLen, d.Step, d.Worker}}
			index[gk] = g
			groups = append(groups, g)
		}
		g.keys = append(g.keys, c.keys.Task(p, d.Task), c.keys.TaskLog(p, d.Task))
		g.args = append(g.args, d.Task, d.Token, d.Attempt, d.EntryID)
		g.items = append(g.items, i)
	}
	return groups
}

// Completion is one handler result for CompleteBatch.
type Completion struct {
	Delivery Delivery
	Output   []byte
	Label    string
}

// CompleteBatch is Complete for many tokens: one script call per
// partition and step (complete.lua takes a batch), all sent in one round
// trip. A switch without a matching route returns an error wrapping
// ErrNoRoute for that token, as Complete does.
func (c *Client) CompleteBatch(ctx context.Context, cs []Completion) ([]Outcome, []error) {
	outs, errs := make([]Outcome, len(cs)), make([]error, len(cs))
	groups := c.completeCalls(cs, errs)
	replies, rerrs := c.pipelineScripts(ctx, lua.Complete, len(groups), func(g int) ([]string, []any) {
		return groups[g].keys, groups[g].args
	})
	for g, grp := range groups {
		for k, i := range grp.items {
			if errs[i] = rerrs[g]; errs[i] == nil {
				code, _ := replies[g][2*k].(int64)
				label, _ := replies[g][2*k+1].(string)
				outs[i], errs[i] = completeOutcome(code, label)
			}
		}
	}
	return outs, errs
}

// completeCalls groups completions into complete.lua calls; a completion
// that cannot be sent (bad id, unknown step, invalid output) gets its
// error in errs.
func (c *Client) completeCalls(cs []Completion, errs []error) []*batchGroup {
	var groups []*batchGroup
	index := map[groupKey]*batchGroup{}
	now := ms(c.cfg.Now())
	labels := make([]string, len(cs)) // a map step sends its items in the label's place
	for i, x := range cs {
		d := x.Delivery
		p, err := deliveryPartition(d)
		if err != nil {
			errs[i] = err
			continue
		}
		cp, err := c.pipelineFor(p)
		if err != nil {
			errs[i] = err
			continue
		}
		route, ok := cp.routeArg[d.Step]
		if !ok {
			errs[i] = fmt.Errorf("%w: pipeline %s %s has no step %q", ErrStepNotFound, p.Pipeline, p.API, d.Step)
			continue
		}
		if err := c.CheckPayload(x.Output); err != nil {
			errs[i] = fmt.Errorf("output of step %s: %w", d.Step, err)
			continue
		}
		if s := cp.p.Steps[d.Step]; s.Map != "" {
			// A map step: its items go to complete.lua in the label's place.
			items, _, err := mapItems(s, x.Output)
			if err != nil {
				errs[i] = err
				continue
			}
			labels[i] = items
		} else {
			labels[i] = x.Label
		}
		gk := groupKey{p, d.Step, d.Worker, d.Priority}
		g, ok := index[gk]
		if !ok {
			g = &batchGroup{keys: []string{c.keys.Firehose(p), c.keys.StepAt(p, d.Step, d.Priority)},
				args: append([]any{now, c.cfg.FirehoseMaxLen, c.cfg.Retention.Milliseconds(), EnvelopeVersion.API(), d.Step, d.Worker}, route...)}
			for _, s := range cp.streams[d.Step] {
				g.keys = append(g.keys, c.keys.StepAt(p, s, d.Priority))
			}
			g.keys = append(g.keys, c.keys.TaskIndex(p))
			index[gk] = g
			groups = append(groups, g)
		}
		g.items = append(g.items, i)
	}
	// complete.lua removes the acknowledged entries of a call with one trim
	// of the stream's head when it gets them in the order of their ids
	// (lib.lua: ack_batch).
	for _, g := range groups {
		sort.SliceStable(g.items, func(a, b int) bool {
			return StreamIDLess(cs[g.items[a]].Delivery.EntryID, cs[g.items[b]].Delivery.EntryID)
		})
		for _, i := range g.items {
			x := cs[i]
			d := x.Delivery
			p, _ := deliveryPartition(d)
			g.keys = append(g.keys, c.keys.Task(p, d.Task), c.keys.TaskLog(p, d.Task), c.keys.TaskResult(p, d.Task))
			g.args = append(g.args, d.Task, d.Token, d.Attempt, d.EntryID, string(x.Output), labels[i], d.startedArg())
		}
	}
	return groups
}
