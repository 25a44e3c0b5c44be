package dsat

import (
	"context"
	"errors"
	"fmt"

	"github.com/dsat-dev/dsat/lua"
)

// Bulk actions (issue 18): retry the failed tasks of a pipeline, cancel
// its pending, scheduled or running ones, retry the tasks of its dead
// letters. Each call handles at most MaxSearchLimit tasks, found by a task
// search (or the dead-letter list), with one script call per task sent in
// one round trip; Next continues where it stopped. A task that changed
// meanwhile (no longer failed, already ended) is skipped, not counted, so
// a second identical call counts 0.

// BulkResult is the outcome of one bulk call: how many tasks it changed,
// and the cursor of the next call ("" when it reached the end).
type BulkResult struct {
	Count int
	Next  string
}

// RetryFailed re-drives the failed tasks of q.Pipeline (required) created
// in [q.Since, q.Until), newest first, at most q.Limit (default and at most
// MaxSearchLimit) from q.Cursor.
func (c *Client) RetryFailed(ctx context.Context, q TaskQuery) (BulkResult, error) {
	if q.Limit == 0 {
		q.Limit = MaxSearchLimit
	}
	q.Status = []string{StatusFailed}
	page, err := c.bulkPage(ctx, q)
	if err != nil {
		return BulkResult{}, err
	}
	n, err := c.retryMany(ctx, summaryIDs(page.Items))
	return BulkResult{Count: n, Next: page.Next}, err
}

// CancelTasks cancels the tasks of q.Pipeline (required) in q.Status (any
// of pending, scheduled, running; none given: all three) created in
// [q.Since, q.Until), at most q.Limit (default and at most MaxSearchLimit)
// from q.Cursor, with the reason given.
func (c *Client) CancelTasks(ctx context.Context, q TaskQuery, reason string) (BulkResult, error) {
	if q.Limit == 0 {
		q.Limit = MaxSearchLimit
	}
	if len(q.Status) == 0 {
		q.Status = []string{StatusPending, StatusScheduled, StatusRunning}
	}
	for _, s := range q.Status {
		if s == StatusSucceeded || s == StatusFailed || s == StatusCancelled {
			return BulkResult{}, fmt.Errorf("%w: status %q has ended; cancel takes pending, scheduled or running", ErrInvalidSearch, s)
		}
	}
	page, err := c.bulkPage(ctx, q)
	if err != nil {
		return BulkResult{}, err
	}
	ids := summaryIDs(page.Items)
	replies, errs := c.pipelineScripts(ctx, lua.Cancel, len(ids), func(i int) ([]string, []any) {
		tid, _ := ParseTaskID(ids[i])
		return c.cancelCall(tid, reason)
	})
	n := 0
	for i := range ids {
		if errs[i] != nil {
			return BulkResult{}, errs[i]
		}
		if replyCode(replies[i]) == 1 {
			n++
		}
	}
	return BulkResult{Count: n, Next: page.Next}, nil
}

// RetryDead re-drives the failed tasks of the named pipeline's dead
// letters: at most MaxSearchLimit letters, newest first, older than before
// ("" for the newest). Letters of a task that is not failed (retried
// already, or expired) are skipped; a re-driven task's letters are removed.
func (c *Client) RetryDead(ctx context.Context, pipeline, before string) (BulkResult, error) {
	letters, next, err := c.Dead(ctx, pipeline, before, MaxSearchLimit)
	if err != nil {
		return BulkResult{}, err
	}
	seen := map[string]bool{}
	var ids []string
	for _, d := range letters {
		if _, err := ParseTaskID(d.Task); err == nil && !seen[d.Task] {
			seen[d.Task] = true
			ids = append(ids, d.Task)
		}
	}
	n, err := c.retryMany(ctx, ids)
	return BulkResult{Count: n, Next: next}, err
}

func (c *Client) bulkPage(ctx context.Context, q TaskQuery) (TaskPage, error) {
	if q.Pipeline == "" {
		return TaskPage{}, fmt.Errorf("%w: a bulk action needs a pipeline", ErrInvalidSearch)
	}
	return c.Search(ctx, q)
}

// retryMany re-drives the failed tasks among ids (one round trip) and
// returns how many it re-drove.
func (c *Client) retryMany(ctx context.Context, ids []string) (int, error) {
	type call struct {
		keys []string
		args []any
	}
	var calls []call
	for _, id := range ids {
		keys, args, err := c.retryCall(id)
		if errors.Is(err, ErrPipelineNotFound) {
			continue // a version no longer loaded: Retry would refuse it too
		}
		if err != nil {
			return 0, err
		}
		calls = append(calls, call{keys, args})
	}
	replies, errs := c.pipelineScripts(ctx, lua.Retry, len(calls), func(i int) ([]string, []any) {
		return calls[i].keys, calls[i].args
	})
	n := 0
	for i := range calls {
		if errs[i] != nil {
			return n, errs[i]
		}
		if replyCode(replies[i]) == 1 {
			n++
		}
	}
	return n, nil
}

func summaryIDs(items []TaskSummary) []string {
	ids := make([]string, len(items))
	for i, t := range items {
		ids[i] = t.ID
	}
	return ids
}
