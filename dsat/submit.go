package dsat

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// SubmitOptions are optional settings of a submission.
type SubmitOptions struct {
	// IdempotencyKey makes the submission idempotent: the same key and
	// payload return the same task id; the same key with another payload is
	// ErrIdempotencyConflict. Any bytes up to 255 long.
	IdempotencyKey string
	// Trace is a W3C traceparent carried by every token of the task.
	Trace string
	// RunAt delays the task: it exists at once (status scheduled, INIT
	// written) and its entry token reaches the entry step at RunAt, moved
	// by the satellites' promote loop (within PromoteInterval, 1s by
	// default). Zero or a past time runs it at once; at most MaxDelay
	// ahead.
	RunAt time.Time
	// Deadline, when set, cancels the task (CANCELLED with the reason
	// "deadline") once it passes and it has not ended: its running
	// handlers see their context cancelled. It must be in the future, after
	// RunAt, and at most MaxDelay ahead. The satellites and dsat serve look
	// for overdue tasks about once a second.
	Deadline time.Time
	// Priority is the task's priority (every task of a batch): its steps
	// begin waiting high tokens before normal ones before low ones,
	// without starving low ones (see priority.go). The zero value is
	// normal.
	Priority Priority
}

// MaxDelay is how far ahead a submission may be delayed.
const MaxDelay = 366 * 24 * time.Hour

// Submitted is the outcome of one submission.
type Submitted struct {
	ID string
	// Created is false when an idempotency key matched an existing task.
	Created bool
}

// Submit creates a task of the newest version of the named pipeline with
// payload (JSON) as the entry step's input.
func (c *Client) Submit(ctx context.Context, pipeline string, payload []byte, opts SubmitOptions) (Submitted, error) {
	calls, err := c.submitCalls(pipeline, [][]byte{payload}, opts)
	if err != nil {
		return Submitted{}, err
	}
	if err := c.checkEntryBacklog(ctx, c.latest[pipeline], opts, 1); err != nil {
		return Submitted{}, err
	}
	if opts.Priority != PriorityNormal {
		if err := c.markPriorities(ctx, pipeline); err != nil {
			return Submitted{}, err
		}
	}
	r, err := c.runScript(ctx, lua.Submit, calls[0].keys, calls[0].args...)
	if err != nil {
		return Submitted{}, err
	}
	c.submittedTo(c.latest[pipeline], 1)
	return submitted(r, 0)
}

// SubmitBatch submits many payloads to one pipeline in a single round trip
// (one script call per partition) and returns the ids in order. Payloads
// are all checked before anything is written; a Redis error may leave part
// of the batch submitted. An optional SubmitOptions gives every task its
// Trace and RunAt (an IdempotencyKey is refused: it names one task).
func (c *Client) SubmitBatch(ctx context.Context, pipeline string, payloads [][]byte, opts ...SubmitOptions) ([]string, error) {
	var o SubmitOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.IdempotencyKey != "" {
		return nil, fmt.Errorf("%w: an idempotency key names one task, not a batch", ErrInvalidIdempotencyKey)
	}
	calls, err := c.submitCalls(pipeline, payloads, o)
	if err != nil {
		return nil, err
	}
	if err := c.checkEntryBacklog(ctx, c.latest[pipeline], o, len(payloads)); err != nil {
		return nil, err
	}
	if o.Priority != PriorityNormal {
		if err := c.markPriorities(ctx, pipeline); err != nil {
			return nil, err
		}
	}
	replies, errs := c.pipelineScripts(ctx, lua.Submit, len(calls), func(g int) ([]string, []any) {
		return calls[g].keys, calls[g].args
	})
	c.submittedTo(c.latest[pipeline], len(payloads))
	ids := make([]string, len(payloads))
	for g, call := range calls {
		if errs[g] != nil {
			return nil, errs[g]
		}
		for k, i := range call.items {
			s, err := submitted(replies[g], k)
			if err != nil {
				return nil, err
			}
			ids[i] = s.ID
		}
	}
	return ids, nil
}

// submitted reads task k's outcome in a submit reply (code, id per task).
func submitted(r []any, k int) (Submitted, error) {
	if len(r) < 2*k+2 {
		return Submitted{}, fmt.Errorf("dsat: submit: unexpected reply %v", r)
	}
	id := replyString(r, 2*k+1)
	code, _ := r[2*k].(int64)
	switch code {
	case 1:
		return Submitted{ID: id, Created: true}, nil
	case 0:
		return Submitted{ID: id}, nil
	case -5:
		return Submitted{ID: id}, fmt.Errorf("%w (task %s)", ErrIdempotencyConflict, id)
	}
	return Submitted{}, fmt.Errorf("dsat: submit: unexpected reply %v", r)
}

// submitCall is one submit.lua call: tasks of one partition.
type submitCall struct {
	part  Partition
	keys  []string
	args  []any
	items []int // indexes of the payloads
}

// submitCalls checks every payload and the options, gives each task its
// partition (by the idempotency key, else round-robin) and id, and groups
// the tasks into one script call per partition.
func (c *Client) submitCalls(pipeline string, payloads [][]byte, opts SubmitOptions) ([]*submitCall, error) {
	p, err := c.Pipeline(pipeline)
	if err != nil {
		return nil, err
	}
	if p.Draining {
		return nil, fmt.Errorf("%w: %q: only version %s is loaded, from its record, to finish its unfinished tasks (its file left the pipelines folder)", ErrPipelineNotFound, pipeline, p.Version)
	}
	for i, payload := range payloads {
		if err := c.CheckPayload(payload); err != nil {
			if len(payloads) > 1 {
				err = fmt.Errorf("item %d: %w", i, err)
			}
			return nil, err
		}
	}
	if err := CheckTrace(opts.Trace); err != nil {
		return nil, err
	}
	if opts.Priority < PriorityLow || opts.Priority > PriorityHigh {
		return nil, fmt.Errorf("%w: %d", ErrInvalidPriority, opts.Priority)
	}
	if len(opts.IdempotencyKey) > 255 {
		return nil, fmt.Errorf("%w: %d bytes, at most 255", ErrInvalidIdempotencyKey, len(opts.IdempotencyKey))
	}
	now := c.cfg.Now()
	runAt := ""
	if !opts.RunAt.IsZero() && opts.RunAt.After(now) {
		if opts.RunAt.Sub(now) > MaxDelay {
			return nil, fmt.Errorf("%w: run time %s is more than a year ahead", ErrInvalidDelay, opts.RunAt.UTC().Format(time.RFC3339))
		}
		runAt = ms(opts.RunAt)
	}
	deadline, err := checkDeadline(opts, now)
	if err != nil {
		return nil, err
	}
	idem, digest := "0", ""
	if opts.IdempotencyKey != "" {
		sum := sha256.Sum256(payloads[0])
		idem, digest = "1", hex.EncodeToString(sum[:16])
	}
	var calls []*submitCall
	byPart := map[Partition]*submitCall{}
	for i, payload := range payloads {
		var part Partition
		if opts.IdempotencyKey != "" {
			h := fnv.New32a()
			h.Write([]byte(opts.IdempotencyKey))
			part = p.Partition(int(h.Sum32() % uint32(p.Partitions)))
		} else {
			part = p.Partition(int(c.rr.Add(1) % uint64(p.Partitions)))
		}
		call, ok := byPart[part]
		if !ok {
			call = &submitCall{part: part, keys: []string{c.keys.Firehose(part), c.keys.StepAt(part, p.Entry, opts.Priority), c.keys.Retry(part), c.keys.Deadlines(part), c.keys.TaskIndex(part)},
				args: []any{ms(now), idem, c.cfg.FirehoseMaxLen, EnvelopeVersion.API(), p.Version.String(),
					DefaultContentType, p.Entry, opts.Trace, p.Name, c.cfg.IdempotencyTTL.Milliseconds(), digest, runAt, deadline,
					opts.Priority.arg()}}
			byPart[part] = call
			calls = append(calls, call)
		}
		id := NewTaskID(part, now).String()
		call.keys = append(call.keys, c.keys.Task(part, id), c.keys.TaskLog(part, id))
		call.args = append(call.args, id, string(payload))
		call.items = append(call.items, i)
	}
	if opts.IdempotencyKey != "" {
		calls[0].keys = append(calls[0].keys, c.keys.Idempotency(calls[0].part, opts.IdempotencyKey))
	}
	return calls, nil
}

// checkDeadline checks opts.Deadline against now and RunAt and returns it
// as submit.lua's argument ("" for none).
func checkDeadline(opts SubmitOptions, now time.Time) (string, error) {
	d := opts.Deadline
	switch {
	case d.IsZero():
		return "", nil
	case !d.After(now):
		return "", fmt.Errorf("%w: %s has already passed", ErrInvalidDeadline, d.UTC().Format(time.RFC3339Nano))
	case d.Sub(now) > MaxDelay:
		return "", fmt.Errorf("%w: %s is more than a year ahead", ErrInvalidDeadline, d.UTC().Format(time.RFC3339))
	case !opts.RunAt.IsZero() && !d.After(opts.RunAt):
		return "", fmt.Errorf("%w: %s is not after the run time %s: the task would be cancelled before it starts",
			ErrInvalidDeadline, d.UTC().Format(time.RFC3339), opts.RunAt.UTC().Format(time.RFC3339))
	}
	return ms(d), nil
}

// CheckPayload returns an error wrapping ErrInvalidPayload unless b is
// valid JSON of at most MaxPayload bytes.
func (c *Client) CheckPayload(b []byte) error {
	if len(b) > c.cfg.MaxPayload {
		return fmt.Errorf("%w: %d bytes is larger than the limit of %d", ErrInvalidPayload, len(b), c.cfg.MaxPayload)
	}
	if !json.Valid(b) {
		return fmt.Errorf("%w: not valid JSON", ErrInvalidPayload)
	}
	return nil
}

// pipelineScripts runs n calls of one script in a single pipeline and
// returns each call's reply or error. It uses EVALSHA (there is no EVAL
// fallback inside a pipeline) and, after NOSCRIPT (a restart or failover
// lost the script cache), loads the script and runs the whole batch once
// more; every dsat script is idempotent, so that is safe.
func (c *Client) pipelineScripts(ctx context.Context, s *redis.Script, n int, call func(i int) ([]string, []any)) ([][]any, []error) {
	replies, errs := make([][]any, n), make([]error, n)
	for try := 0; ; try++ {
		cmds := make([]*redis.Cmd, n)
		_, _ = c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i := 0; i < n; i++ {
				keys, args := call(i)
				cmds[i] = s.EvalSha(ctx, pipe, keys, args...)
			}
			return nil
		})
		noscript := false
		for i, cmd := range cmds {
			replies[i], errs[i] = nil, nil
			v, err := cmd.Result()
			if err != nil {
				noscript = noscript || redis.HasErrorPrefix(err, "NOSCRIPT")
				errs[i] = fmt.Errorf("dsat: pipelined script: %w", err)
				continue
			}
			switch r := v.(type) {
			case int64:
				replies[i] = []any{r}
			case []any:
				replies[i] = r
			default:
				errs[i] = fmt.Errorf("dsat: pipelined script returned %T", v)
			}
		}
		if !noscript || try > 0 {
			return replies, errs
		}
		if err := s.Load(ctx, c.rdb).Err(); err != nil {
			for i := range errs {
				errs[i] = fmt.Errorf("dsat: load script: %w", err)
			}
			return replies, errs
		}
	}
}
