package dsat

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"
)

// Priorities (issue 16). A task is submitted high, normal (the default) or
// low; every token of the task has that priority. A step has one stream
// per level in each partition, all in the partition's hash tag and read by
// the step's one consumer group: Keys.StepAt. The normal stream is the
// step stream of a pipeline that never used priorities, so such a pipeline
// reads, measures and writes one stream per step as before.
//
// Which pipelines use priorities is a hash outside the partitions
// (Keys.Priorities, field the pipeline's name): the first submission of a
// high or low task marks its pipeline, and from then on the readers, the
// load and backlog measures and the time keeper cover the three levels of
// its steps. The satellites read the hash with the pauses (every
// FlowInterval); other processes read it at most once a second, when they
// need it.

// Priority is a task's priority. The zero value is PriorityNormal.
type Priority int8

// Priority levels.
const (
	PriorityLow    Priority = -1
	PriorityNormal Priority = 0
	PriorityHigh   Priority = 1
)

// Levels lists the priority levels, highest first.
var Levels = [...]Priority{PriorityHigh, PriorityNormal, PriorityLow}

// String returns "high", "normal" or "low".
func (p Priority) String() string {
	switch p {
	case PriorityHigh:
		return "high"
	case PriorityLow:
		return "low"
	}
	return "normal"
}

// arg is the priority as the scripts and the envelope take it: "" for
// normal (the field is left out), else its name.
func (p Priority) arg() string {
	if p == PriorityNormal {
		return ""
	}
	return p.String()
}

// streamSuffix ends the key of the level's step stream: "" for normal.
func (p Priority) streamSuffix() string {
	switch p {
	case PriorityHigh:
		return ":hi"
	case PriorityLow:
		return ":lo"
	}
	return ""
}

// MarshalText writes the priority's name.
func (p Priority) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// UnmarshalText reads a name (see ParsePriority).
func (p *Priority) UnmarshalText(b []byte) error {
	v, err := ParsePriority(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// ParsePriority reads "high", "normal" or "low" ("" is normal); anything
// else is an error wrapping ErrInvalidPriority that names the allowed
// values.
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "high":
		return PriorityHigh, nil
	case "normal", "":
		return PriorityNormal, nil
	case "low":
		return PriorityLow, nil
	}
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return PriorityNormal, fmt.Errorf("%w: %q: use high, normal or low", ErrInvalidPriority, s)
}

// priorityRefresh is how old a process's knowledge of the pipelines that
// use priorities may be before a measure that needs it reads it again.
const priorityRefresh = time.Second

// priorityMark is how often a process marks a pipeline again while it
// submits high or low tasks to it (so a mark lost with a flushed or
// purged Redis comes back).
const priorityMark = 10 * time.Second

// priorityState is what a client knows of the pipelines that use
// priorities.
type priorityState struct {
	mu     sync.Mutex
	on     map[string]bool
	readAt time.Time
	marked map[string]time.Time // by this process, when
}

// PrioritiesUsed reports, without a Redis call, whether the named pipeline
// uses priorities as far as this client knows (RefreshPriorities).
func (c *Client) PrioritiesUsed(pipeline string) bool {
	ps := &c.prio
	ps.mu.Lock()
	defer ps.mu.Unlock()
	return ps.on[pipeline]
}

// RefreshPriorities reads which pipelines use priorities (one HGETALL).
// The satellites call it every FlowInterval; a pipeline once marked stays
// marked (until Purge).
func (c *Client) RefreshPriorities(ctx context.Context) error {
	m, err := c.rdb.HGetAll(ctx, c.keys.Priorities()).Result()
	if err != nil {
		return fmt.Errorf("dsat: read the pipelines that use priorities: %w", err)
	}
	ps := &c.prio
	ps.mu.Lock()
	defer ps.mu.Unlock()
	ps.readAt = time.Now()
	on := make(map[string]bool, len(m))
	for name := range m {
		on[name] = true
	}
	ps.on = on
	return nil
}

// levels returns the priority levels whose streams a measure of p's steps
// must cover: the three when p uses priorities, else normal only. It reads
// the marks again when the last read is older than priorityRefresh; on a
// failed read it covers the three (a measure must not miss tokens).
func (c *Client) levels(ctx context.Context, p *Pipeline) []Priority {
	ps := &c.prio
	ps.mu.Lock()
	stale := time.Since(ps.readAt) > priorityRefresh
	ps.mu.Unlock()
	if stale && c.RefreshPriorities(ctx) != nil {
		return Levels[:]
	}
	if c.PrioritiesUsed(p.Name) {
		return Levels[:]
	}
	return Levels[1:2]
}

// markPriorities records that pipeline uses priorities, before a high or
// low task of it is queued: at most once per priorityMark per process.
func (c *Client) markPriorities(ctx context.Context, pipeline string) error {
	ps := &c.prio
	ps.mu.Lock()
	at, ok := ps.marked[pipeline]
	ps.mu.Unlock()
	if ok && time.Since(at) < priorityMark {
		return nil
	}
	now := c.cfg.Now()
	if err := c.rdb.HSetNX(ctx, c.keys.Priorities(), pipeline, strconv.FormatInt(now.UnixMilli(), 10)).Err(); err != nil {
		return fmt.Errorf("dsat: mark %s as using priorities: %w", pipeline, err)
	}
	ps.mu.Lock()
	if ps.marked == nil {
		ps.marked = map[string]time.Time{}
	}
	if ps.on == nil {
		ps.on = map[string]bool{}
	}
	ps.marked[pipeline] = time.Now()
	ps.on[pipeline] = true
	ps.mu.Unlock()
	return nil
}

// priorityOrder is the order in which a reader of a step that uses
// priorities starts its reads: the smooth weighted round robin of the
// weights high 6, normal 3, low 1 (asynq's default weights). Each read
// takes what it can from its starting level, then fills the rest of its
// count from the other levels, highest first; so while every level has a
// backlog, reads of one token take high, normal and low in the ratio
// 6:3:1, and a level without tokens gives its turn to the others.
var priorityOrder = [...]Priority{
	PriorityHigh, PriorityNormal, PriorityHigh, PriorityHigh, PriorityNormal,
	PriorityHigh, PriorityLow, PriorityHigh, PriorityNormal, PriorityHigh,
}

// PriorityWeights are the weights of priorityOrder, for the docs and tests.
var PriorityWeights = map[Priority]int{PriorityHigh: 6, PriorityNormal: 3, PriorityLow: 1}

// levelStreams lists the streams of steps at every level, as promote.lua
// and retry.lua take them: the normal ones, then the high, then the low.
func (c *Client) levelStreams(p Partition, steps []string) []string {
	out := make([]string, 0, 3*len(steps))
	for _, level := range [...]Priority{PriorityNormal, PriorityHigh, PriorityLow} {
		for _, s := range steps {
			out = append(out, c.keys.StepAt(p, s, level))
		}
	}
	return out
}
