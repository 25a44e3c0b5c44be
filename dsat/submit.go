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
	call, err := c.submitCall(pipeline, payload, opts)
	if err != nil {
		return Submitted{}, err
	}
	r, err := c.runScript(ctx, lua.Submit, call.keys, call.args...)
	if err != nil {
		return Submitted{}, err
	}
	return submitted(r)
}

// SubmitBatch submits many payloads to one pipeline in a single round trip
// and returns the ids in order. Payloads are all checked before anything is
// written; a Redis error may leave a prefix of the batch submitted. An
// optional SubmitOptions gives every task its Trace and RunAt (an
// IdempotencyKey is refused: it names one task).
func (c *Client) SubmitBatch(ctx context.Context, pipeline string, payloads [][]byte, opts ...SubmitOptions) ([]string, error) {
	var o SubmitOptions
	if len(opts) > 0 {
		o = opts[0]
	}
	if o.IdempotencyKey != "" {
		return nil, fmt.Errorf("%w: an idempotency key names one task, not a batch", ErrInvalidPayload)
	}
	calls := make([]submitCall, len(payloads))
	for i, p := range payloads {
		call, err := c.submitCall(pipeline, p, o)
		if err != nil {
			return nil, fmt.Errorf("item %d: %w", i, err)
		}
		calls[i] = call
	}
	replies, errs := c.pipelineScripts(ctx, lua.Submit, len(calls), func(i int) ([]string, []any) {
		return calls[i].keys, calls[i].args
	})
	ids := make([]string, len(calls))
	for i, r := range replies {
		if errs[i] != nil {
			return nil, errs[i]
		}
		s, err := submitted(r)
		if err != nil {
			return nil, err
		}
		ids[i] = s.ID
	}
	return ids, nil
}

func submitted(r []any) (Submitted, error) {
	id := replyString(r, 1)
	switch replyCode(r) {
	case 1:
		return Submitted{ID: id, Created: true}, nil
	case 0:
		return Submitted{ID: id}, nil
	case -5:
		return Submitted{ID: id}, fmt.Errorf("%w (task %s)", ErrIdempotencyConflict, id)
	}
	return Submitted{}, fmt.Errorf("dsat: submit: unexpected reply %v", r)
}

type submitCall struct {
	keys []string
	args []any
}

func (c *Client) submitCall(pipeline string, payload []byte, opts SubmitOptions) (submitCall, error) {
	p, err := c.Pipeline(pipeline)
	if err != nil {
		return submitCall{}, err
	}
	if err := c.CheckPayload(payload); err != nil {
		return submitCall{}, err
	}
	if err := CheckTrace(opts.Trace); err != nil {
		return submitCall{}, err
	}
	if len(opts.IdempotencyKey) > 255 {
		return submitCall{}, fmt.Errorf("%w: idempotency key longer than 255 bytes", ErrInvalidPayload)
	}
	now := c.cfg.Now()
	runAt := ""
	if !opts.RunAt.IsZero() && opts.RunAt.After(now) {
		if opts.RunAt.Sub(now) > MaxDelay {
			return submitCall{}, fmt.Errorf("%w: run time %s is more than a year ahead", ErrInvalidDelay, opts.RunAt.UTC().Format(time.RFC3339))
		}
		runAt = ms(opts.RunAt)
	}
	var part Partition
	if opts.IdempotencyKey != "" {
		h := fnv.New32a()
		h.Write([]byte(opts.IdempotencyKey))
		part = p.Partition(int(h.Sum32() % uint32(p.Partitions)))
	} else {
		part = p.Partition(int(c.rr.Add(1) % uint64(p.Partitions)))
	}
	id := NewTaskID(part, now).String()
	keys := []string{c.keys.Task(part, id), c.keys.TaskLog(part, id), c.keys.Firehose(part), c.keys.Step(part, p.Entry), c.keys.Retry(part)}
	if opts.IdempotencyKey != "" {
		keys = append(keys, c.keys.Idempotency(part, opts.IdempotencyKey))
	}
	sum := sha256.Sum256(payload)
	args := []any{id, ms(now), c.cfg.FirehoseMaxLen, EnvelopeVersion.API(), p.Version.String(),
		DefaultContentType, string(payload), p.Entry, opts.Trace, p.Name,
		c.cfg.IdempotencyTTL.Milliseconds(), hex.EncodeToString(sum[:16]), runAt}
	return submitCall{keys: keys, args: args}, nil
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
