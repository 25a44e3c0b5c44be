package dsat

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Flow control: pauses, and the backlog checks of steps with
// max_backlog. A pause is a field of one hash outside the partitions
// (Keys.Paused), read by every satellite about twice a second; a paused
// step's satellites stop reading its tokens, so none is begun.

// Paused is what is paused: "pipeline" (every step) or "pipeline/step",
// with when it was paused.
type Paused map[string]time.Time

// Step reports whether step of pipeline is paused, itself or with its
// whole pipeline.
func (p Paused) Step(pipeline, step string) bool {
	_, all := p[pipeline]
	_, one := p[pipeline+"/"+step]
	return all || one
}

// pauseField names what Pause pauses, after checking it exists.
func (c *Client) pauseField(pipeline, step string) (string, error) {
	p, err := c.Pipeline(pipeline)
	if err != nil {
		return "", err
	}
	if step == "" {
		return pipeline, nil
	}
	if _, ok := p.Steps[step]; !ok {
		return "", fmt.Errorf("%w: pipeline %s has no step %q", ErrStepNotFound, pipeline, step)
	}
	return pipeline + "/" + step, nil
}

// Pause pauses a pipeline (step "": every step) or one of its steps: the
// satellites begin no new token of it (within about a second); running
// handlers finish; submissions are still accepted and wait. Pausing twice
// is harmless.
func (c *Client) Pause(ctx context.Context, pipeline, step string) error {
	f, err := c.pauseField(pipeline, step)
	if err != nil {
		return err
	}
	if err := c.rdb.HSetNX(ctx, c.keys.Paused(), f, strconv.FormatInt(c.cfg.Now().UnixMilli(), 10)).Err(); err != nil {
		return fmt.Errorf("dsat: pause %s: %w", f, err)
	}
	return nil
}

// Resume undoes Pause of the same pipeline or step (a step paused with
// its whole pipeline stays paused until the pipeline is resumed).
func (c *Client) Resume(ctx context.Context, pipeline, step string) error {
	f, err := c.pauseField(pipeline, step)
	if err != nil {
		return err
	}
	if err := c.rdb.HDel(ctx, c.keys.Paused(), f).Err(); err != nil {
		return fmt.Errorf("dsat: resume %s: %w", f, err)
	}
	return nil
}

// ListPaused returns every pause.
func (c *Client) ListPaused(ctx context.Context) (Paused, error) {
	m, err := c.rdb.HGetAll(ctx, c.keys.Paused()).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: read pauses: %w", err)
	}
	out := make(Paused, len(m))
	for f, v := range m {
		ms, _ := strconv.ParseInt(v, 10, 64)
		out[f] = time.UnixMilli(ms)
	}
	return out, nil
}

// Backlog is the number of tokens waiting (not yet read) in step's
// streams, over every partition of p's current version.
func (c *Client) Backlog(ctx context.Context, p *Pipeline, step string) (int64, error) {
	l, err := c.StepLoads(ctx, p, step)
	if err != nil {
		return 0, err
	}
	return l[step].Backlog, nil
}

// entryBacklogTTL is how long a submission trusts the entry backlog it
// read last (per pipeline): a burst of submissions costs one read per TTL.
const entryBacklogTTL = 100 * time.Millisecond

// backlogCache remembers, per pipeline, the entry backlog and when it was
// read.
type backlogCache struct {
	mu   sync.Mutex
	seen map[string]backlogSeen
}

type backlogSeen struct {
	n  int64
	at time.Time
}

// checkEntryBacklog returns ErrBacklogFull when p's entry step has a
// max_backlog and n more tokens would take its backlog (read at most
// entryBacklogTTL ago) past it — unless the step is empty: a batch larger
// than max_backlog is taken then, or it could never be. Delayed
// submissions are not checked: their tokens arrive later.
func (c *Client) checkEntryBacklog(ctx context.Context, p *Pipeline, opts SubmitOptions, n int) error {
	limit := p.Steps[p.Entry].MaxBacklog
	if limit <= 0 || opts.RunAt.After(c.cfg.Now()) {
		return nil
	}
	bc := &c.entryBacklogs
	bc.mu.Lock()
	seen, ok := bc.seen[p.Name]
	bc.mu.Unlock()
	if !ok || time.Since(seen.at) > entryBacklogTTL {
		n, err := c.Backlog(ctx, p, p.Entry)
		if err != nil {
			return err
		}
		seen = backlogSeen{n: n, at: time.Now()}
		bc.mu.Lock()
		if bc.seen == nil {
			bc.seen = map[string]backlogSeen{}
		}
		bc.seen[p.Name] = seen
		bc.mu.Unlock()
	}
	if seen.n >= int64(limit) || seen.n > 0 && seen.n+int64(n) > int64(limit) {
		return fmt.Errorf("%w: %d tokens wait at step %s of %s, %d more would pass its max_backlog of %d",
			ErrBacklogFull, seen.n, p.Entry, p.Name, n, limit)
	}
	return nil
}

// submittedTo counts n tokens just queued at p's entry step into the
// backlog read last, so that submissions within entryBacklogTTL of one
// read still see each other.
func (c *Client) submittedTo(p *Pipeline, n int) {
	if p.Steps[p.Entry].MaxBacklog <= 0 {
		return
	}
	bc := &c.entryBacklogs
	bc.mu.Lock()
	if seen, ok := bc.seen[p.Name]; ok {
		seen.n += int64(n)
		bc.seen[p.Name] = seen
	}
	bc.mu.Unlock()
}
