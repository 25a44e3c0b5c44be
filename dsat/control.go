package dsat

import (
	"context"
	"fmt"
	"sort"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// Cancel cancels a task: CANCELLED at once, queued tokens dropped, running
// handlers cancelled by their satellites. ErrTaskFinal when it already
// ended.
func (c *Client) Cancel(ctx context.Context, id, reason string) error {
	tid, err := ParseTaskID(id)
	if err != nil {
		return err
	}
	keys, args := c.cancelCall(tid, reason)
	r, err := c.runScript(ctx, lua.Cancel, keys, args...)
	if err != nil {
		return err
	}
	switch replyCode(r) {
	case 1:
		return nil
	case -1:
		return fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	case -3:
		return fmt.Errorf("%w: %s", ErrTaskFinal, id)
	}
	return fmt.Errorf("dsat: cancel: unexpected reply %v", r)
}

// cancelCall is the cancel.lua call for a task.
func (c *Client) cancelCall(tid TaskID, reason string) ([]string, []any) {
	p, id := tid.Partition, tid.String()
	keys := []string{c.keys.Task(p, id), c.keys.TaskLog(p, id), c.keys.Firehose(p), c.keys.TaskIndex(p)}
	return keys, []any{id, ms(c.cfg.Now()), c.cfg.FirehoseMaxLen, c.cfg.Retention.Milliseconds(), reason}
}

// Retry re-drives a failed task: each dead token is queued again at the
// step where it died, with fresh attempts. It returns how many tokens were
// re-driven. ErrTaskNotFailed unless the task's status is failed.
func (c *Client) Retry(ctx context.Context, id string) (int, error) {
	keys, args, err := c.retryCall(id)
	if err != nil {
		return 0, err
	}
	r, err := c.runScript(ctx, lua.Retry, keys, args...)
	if err != nil {
		return 0, err
	}
	switch replyCode(r) {
	case 1:
		n, _ := r[1].(int64)
		return int(n), nil
	case -1:
		return 0, fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	case -3:
		return 0, fmt.Errorf("%w: %s", ErrTaskNotFailed, id)
	case -6:
		return 0, fmt.Errorf("%w: retry %s: its dead token's step %q is not in the loaded version of the pipeline", ErrStepNotFound, id, replyString(r, 1))
	}
	return 0, fmt.Errorf("dsat: retry: unexpected reply %v", r)
}

// retryCall is the retry.lua call for a task.
func (c *Client) retryCall(id string) ([]string, []any, error) {
	tid, err := ParseTaskID(id)
	if err != nil {
		return nil, nil, err
	}
	p := tid.Partition
	cp, err := c.pipelineFor(p)
	if err != nil {
		return nil, nil, err
	}
	keys := []string{c.keys.Task(p, id), c.keys.TaskLog(p, id), c.keys.Firehose(p), c.keys.Dead(p), c.keys.TaskIndex(p)}
	args := []any{id, ms(c.cfg.Now()), c.cfg.FirehoseMaxLen, EnvelopeVersion.API()}
	for _, s := range cp.allSteps {
		args = append(args, s)
	}
	keys = append(keys, c.levelStreams(p, cp.allSteps)...) // every level's: the task's priority picks (retry.lua)
	return keys, args, nil
}

// DeadLetter is one entry of a dead-letter stream (docs/design.md §3). Entries for
// stream entries that could not be parsed have no task; Raw then holds
// what was found.
type DeadLetter struct {
	ID       string `json:"id"`
	Task     string `json:"task"`
	Pipeline string `json:"pipeline"`
	Step     string `json:"step"`
	Attempts int    `json:"attempts"`
	Reason   string `json:"reason"`
	At       Time   `json:"at"`
	Raw      string `json:"raw,omitempty"`
}

// Dead lists the dead letters of every partition of the named pipeline's
// loaded versions, newest first: at most limit entries older than before
// ("" for the newest). The returned cursor continues the listing ("" at the
// end).
func (c *Client) Dead(ctx context.Context, pipeline, before string, limit int) ([]DeadLetter, string, error) {
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	if before != "" && !ValidStreamID(before) {
		return nil, "", fmt.Errorf("dsat: bad cursor %q: want an id <ms>-<seq>", before)
	}
	var parts []Partition
	for _, p := range c.Pipelines() {
		if p.Name == pipeline {
			for n := 0; n < p.Partitions; n++ {
				parts = append(parts, p.Partition(n))
			}
		}
	}
	if len(parts) == 0 {
		return nil, "", fmt.Errorf("%w: %q", ErrPipelineNotFound, pipeline)
	}
	end := "+"
	if before != "" {
		end = prevID(before)
	}
	var all []DeadLetter
	for _, p := range parts {
		msgs, err := c.rdb.XRevRangeN(ctx, c.keys.Dead(p), end, "-", int64(limit)).Result()
		if err != nil {
			return nil, "", fmt.Errorf("dsat: dead letters: %w", err)
		}
		for _, m := range msgs {
			all = append(all, deadLetter(m, pipeline))
		}
	}
	sort.Slice(all, func(i, j int) bool { return StreamIDLess(all[j].ID, all[i].ID) })
	next := ""
	if len(all) > limit {
		all = all[:limit]
	}
	if len(all) == limit {
		next = all[len(all)-1].ID
	}
	return all, next, nil
}

func deadLetter(m redis.XMessage, pipeline string) DeadLetter {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	d := DeadLetter{ID: m.ID, Task: str("task"), Pipeline: pipeline, Step: str("step"), Reason: str("reason"), At: msTime(str("at")), Raw: str("raw")}
	d.Attempts, _ = strconv.Atoi(str("attempts"))
	return d
}
