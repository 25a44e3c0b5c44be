package dsat

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// Task search (issue 18). Each partition keeps a task index, a sorted set
// whose members are "<status letter><the 26 characters of the task id that
// sort by creation time>", all with score 0 (Keys.TaskIndex; the scripts
// move a task's member when its status changes, lua/lib.lua "Task index").
// A status and a creation time range are then one lex range, and a page is
// ZREVRANGEBYLEX ... LIMIT 0 n per status and partition: O(log N + n).
// Pages of several partitions (and pipelines) are merged here, newest
// first; (unique part, whole id) is a total order, and the cursor is the
// id of the last task of a page.

// MaxSearchLimit is the largest page of a task search, and the most tasks
// one bulk action handles per call.
const MaxSearchLimit = 1000

// DefaultSearchLimit is a search's page size when none is given.
const DefaultSearchLimit = 100

// Statuses lists every task status, in the order of a task's life.
var Statuses = []string{StatusPending, StatusScheduled, StatusRunning, StatusSucceeded, StatusFailed, StatusCancelled}

// ixLetter is each status's letter in the task index (lua/lib.lua IX_LETTER).
var ixLetter = map[string]string{StatusPending: "p", StatusScheduled: "w", StatusRunning: "r",
	StatusSucceeded: "s", StatusFailed: "f", StatusCancelled: "c"}

// TaskQuery selects tasks for Search and the bulk actions.
type TaskQuery struct {
	// Pipeline restricts the search to one pipeline ("" for every loaded one).
	Pipeline string
	// Status keeps the tasks in any of these statuses (none: every status).
	Status []string
	// Since and Until keep the tasks created in [Since, Until), to the
	// millisecond (zero: unbounded).
	Since, Until time.Time
	// Limit is the page size, 1 to MaxSearchLimit (0: DefaultSearchLimit).
	Limit int
	// Cursor is the Next of the previous page ("" for the first).
	Cursor string
}

// TaskSummary is one task of a search page.
type TaskSummary struct {
	ID        string `json:"id"`
	Pipeline  string `json:"pipeline"`
	Version   string `json:"version"`
	Status    string `json:"status"`
	CreatedAt Time   `json:"created_at"`
	UpdatedAt Time   `json:"updated_at"`
	Error     string `json:"error,omitempty"`
}

// TaskPage is one page of a search, newest task first. Next continues it
// ("" at the end).
type TaskPage struct {
	Items []TaskSummary
	Next  string
}

// check validates the query and fills in its defaults.
func (q *TaskQuery) check() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalidSearch}, a...)...)
	}
	if q.Limit == 0 {
		q.Limit = DefaultSearchLimit
	}
	if q.Limit < 1 || q.Limit > MaxSearchLimit {
		return bad("limit must be 1 to %d, got %d", MaxSearchLimit, q.Limit)
	}
	for _, s := range q.Status {
		if ixLetter[s] == "" {
			return bad("status %q: want one of %s", s, strings.Join(Statuses, ", "))
		}
	}
	if !q.Since.IsZero() && !q.Until.IsZero() && !q.Until.After(q.Since) {
		return bad("until (%s) must be after since (%s)", q.Until.UTC().Format(TimeFormat), q.Since.UTC().Format(TimeFormat))
	}
	if q.Cursor != "" {
		if _, err := ParseTaskID(q.Cursor); err != nil {
			return bad("cursor must be the next of a previous page (a task id): %v", err)
		}
	}
	return nil
}

// searchParts returns the partitions of every loaded version of the named
// pipeline, or of every loaded pipeline for "".
func (c *Client) searchParts(pipeline string) ([]Partition, error) {
	var parts []Partition
	for _, p := range c.Pipelines() {
		if pipeline == "" || p.Name == pipeline {
			for n := 0; n < p.Partitions; n++ {
				parts = append(parts, p.Partition(n))
			}
		}
	}
	if len(parts) == 0 && pipeline != "" {
		return nil, fmt.Errorf("%w: %q", ErrPipelineNotFound, pipeline)
	}
	return parts, nil
}

// idBound is the first 10 characters of the id of a task created at t:
// every task created at t or later has an id at or above it.
func idBound(t time.Time) string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[0:8], uint64(t.UnixMilli())<<16)
	return idEncoding.EncodeToString(raw[:])[:10]
}

// lexRange is the ZREVRANGEBYLEX range of one status of one partition.
func (q *TaskQuery) lexRange(p Partition, letter string) *redis.ZRangeBy {
	min, max := "["+letter, "("+letter+"~" // '~' sorts after base32hex
	if !q.Since.IsZero() {
		min = "[" + letter + idBound(q.Since)
	}
	if !q.Until.IsZero() {
		max = "(" + letter + idBound(q.Until)
	}
	if q.Cursor != "" {
		cur, _ := ParseTaskID(q.Cursor)
		// Below the cursor: a smaller unique part, or the same one in a
		// partition whose whole id sorts below the cursor's.
		b := "(" + letter + cur.Unique
		if (TaskID{Unique: cur.Unique, Partition: p}).String() < q.Cursor {
			b = "[" + letter + cur.Unique
		}
		if b[1:] < max[1:] || b[1:] == max[1:] && b[0] == '(' {
			max = b
		}
	}
	return &redis.ZRangeBy{Min: min, Max: max, Count: int64(q.Limit) + 1}
}

// Search returns a page of tasks, newest first, read from the partitions'
// task indexes (no scan): one round trip for the index ranges (per
// partition one MULTI, so a task changing status is seen in one status)
// and one for the tasks' hashes. Index entries whose task expired are left
// out of the page.
func (c *Client) Search(ctx context.Context, q TaskQuery) (TaskPage, error) {
	if err := q.check(); err != nil {
		return TaskPage{}, err
	}
	parts, err := c.searchParts(q.Pipeline)
	if err != nil {
		return TaskPage{}, err
	}
	statuses := q.Status
	if len(statuses) == 0 {
		statuses = Statuses
	}
	type found struct {
		id     TaskID
		status string
	}
	cands, err := c.readIndexes(ctx, &q, parts, statuses)
	if err != nil {
		return TaskPage{}, err
	}
	var all []found
	for i, ids := range cands {
		for _, m := range ids {
			all = append(all, found{TaskID{Unique: m[1:], Partition: parts[i/len(statuses)]}, statuses[i%len(statuses)]})
		}
	}
	slices.SortFunc(all, func(a, b found) int {
		if a.id.Unique != b.id.Unique {
			return strings.Compare(b.id.Unique, a.id.Unique)
		}
		return strings.Compare(b.id.String(), a.id.String())
	})
	page := TaskPage{}
	if len(all) > q.Limit {
		all = all[:q.Limit]
		page.Next = all[q.Limit-1].id.String()
	}
	ids := make([]TaskID, len(all))
	for i, f := range all {
		ids[i] = f.id
	}
	page.Items, err = c.summaries(ctx, ids, q.Status)
	return page, err
}

// readIndexes reads, for each partition and status (partition-major), up
// to q.Limit+1 members of the range: each partition's ranges in one MULTI,
// so a task changing status at that moment is seen in exactly one. On one
// Redis that is one round trip; on a Cluster a MULTI cannot span slots, so
// each partition gets its own, all sent at once.
func (c *Client) readIndexes(ctx context.Context, q *TaskQuery, parts []Partition, statuses []string) ([][]string, error) {
	cmds := make([]*redis.StringSliceCmd, len(parts)*len(statuses))
	queue := func(pipe redis.Pipeliner, i int) {
		key := c.keys.TaskIndex(parts[i])
		for j, s := range statuses {
			cmds[i*len(statuses)+j] = pipe.ZRevRangeByLex(ctx, key, q.lexRange(parts[i], ixLetter[s]))
		}
	}
	var err error
	if _, cluster := c.rdb.(*redis.ClusterClient); cluster && len(parts) > 1 {
		errs := make([]error, len(parts))
		var wg sync.WaitGroup
		for i := range parts {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, errs[i] = c.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
					queue(pipe, i)
					return nil
				})
			}()
		}
		wg.Wait()
		err = errors.Join(errs...)
	} else {
		_, err = c.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
			for i := range parts {
				queue(pipe, i)
			}
			return nil
		})
	}
	if err != nil {
		return nil, fmt.Errorf("dsat: read task index: %w", err)
	}
	out := make([][]string, len(cmds))
	for i, cmd := range cmds {
		out[i] = cmd.Val()
	}
	return out, nil
}

// summaries reads the tasks' hashes (one round trip); tasks that expired,
// and tasks that left the wanted statuses (if any) since the index was
// read, are left out.
func (c *Client) summaries(ctx context.Context, ids []TaskID, statuses []string) ([]TaskSummary, error) {
	cmds := make([]*redis.SliceCmd, len(ids))
	_, err := c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = pipe.HMGet(ctx, c.keys.Task(id.Partition, id.String()), "status", "created", "updated", "pv", "error")
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dsat: read tasks: %w", err)
	}
	out := make([]TaskSummary, 0, len(ids))
	for i, id := range ids {
		v := cmds[i].Val()
		str := func(k int) string { s, _ := v[k].(string); return s }
		if len(v) < 5 || str(0) == "" {
			continue // expired since the index was read, or not pruned yet
		}
		if len(statuses) > 0 && !slices.Contains(statuses, str(0)) {
			continue // changed since the index was read
		}
		out = append(out, TaskSummary{ID: id.String(), Pipeline: id.Partition.Pipeline, Version: str(3), Status: str(0),
			CreatedAt: msTime(str(1)), UpdatedAt: msTime(str(2)), Error: str(4)})
	}
	return out, nil
}
