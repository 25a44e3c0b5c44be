package dsat

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// The time keeper's reads and writes: tasks past their deadline, tokens
// past their step's queue_timeout. Satellites run them for the partitions
// they serve and dsat serve for every loaded pipeline, about once a
// second; concurrent runs are harmless (the scripts check before they
// write).

// CancelOverdue cancels up to limit tasks of partition p whose deadline
// (SubmitOptions.Deadline) has passed, with the reason "deadline", and
// returns how many it cancelled, and whether more may be overdue (it
// found limit). Tasks that ended before their deadline only leave the
// partition's deadline set.
func (c *Client) CancelOverdue(ctx context.Context, p Partition, limit int) (cancelled int, more bool, err error) {
	set := c.keys.Deadlines(p)
	now := c.cfg.Now()
	ids, err := c.rdb.ZRangeByScore(ctx, set, &redis.ZRangeBy{Min: "-inf", Max: ms(now), Count: int64(limit)}).Result()
	if err != nil {
		return 0, false, fmt.Errorf("dsat: read deadlines of %s: %w", p.Tag(), err)
	}
	if len(ids) == 0 {
		return 0, false, nil
	}
	keys := []string{set, c.keys.Firehose(p), c.keys.TaskIndex(p)}
	args := []any{ms(now), c.cfg.FirehoseMaxLen, c.cfg.Retention.Milliseconds()}
	for _, id := range ids {
		keys = append(keys, c.keys.Task(p, id), c.keys.TaskLog(p, id))
		args = append(args, id)
	}
	r, err := c.runScript(ctx, lua.Deadline, keys, args...)
	if err != nil {
		return 0, false, err
	}
	return int(replyCode(r)), len(ids) == limit, nil
}

// TimeoutQueued ends, as failed attempts, up to limit tokens of step in
// partition p that no worker has read although they have waited in the
// step's stream longer than its queue_timeout: each gets TIMEOUT (no
// ACK, no worker), then a retry or the dead letters by the step's policy.
// It returns how many tokens it timed out, how many of those went to the
// dead letters (their last attempt), and whether more may be due (it
// found limit); a step without a queue_timeout has none.
//
// A token read by a worker but not yet begun is that worker's to judge
// (workers check the wait of each token they read); this finds the tokens
// nobody reads: no satellite runs the step, or all of them are busy.
func (c *Client) TimeoutQueued(ctx context.Context, p Partition, step string, limit int) (timedOut, dead int, more bool, err error) {
	cp, err := c.pipelineFor(p)
	if err != nil {
		return 0, 0, false, err
	}
	st, ok := cp.p.Steps[step]
	if !ok {
		return 0, 0, false, fmt.Errorf("%w: pipeline %s %s has no step %q", ErrStepNotFound, p.Pipeline, p.API, step)
	}
	if st.QueueTimeout <= 0 {
		return 0, 0, false, nil
	}
	for _, level := range c.levels(ctx, cp.p) { // normal only, unless it uses priorities
		n, nd, more, err := c.timeoutQueued(ctx, p, st, level, limit-timedOut)
		timedOut, dead = timedOut+n, dead+nd
		if err != nil || more {
			return timedOut, dead, more, err
		}
	}
	return timedOut, dead, false, nil
}

// timeoutQueued is TimeoutQueued for the stream of one priority level.
func (c *Client) timeoutQueued(ctx context.Context, p Partition, st *Step, level Priority, limit int) (timedOut, dead int, more bool, err error) {
	step := st.Name
	key := c.keys.StepAt(p, step, level)
	start, err := c.undeliveredStart(ctx, key, step)
	if err != nil || start == "" {
		return 0, 0, false, err
	}
	now := c.cfg.Now()
	end := strconv.FormatInt(now.Add(-st.QueueTimeout).UnixMilli(), 10)
	msgs, err := c.rdb.XRangeN(ctx, key, start, end, int64(limit)).Result()
	if err != nil {
		return 0, 0, false, fmt.Errorf("dsat: read queued tokens of %s/%s: %w", p.Tag(), step, err)
	}
	n := 0
	for _, m := range msgs {
		env, err := ParseEnvelope(m.Values, c.cfg.MaxPayload)
		if err != nil || env.Priority != level {
			continue // not a token of this stream: the step's reader dead-letters it
		}
		d := Delivery{Envelope: env, EntryID: m.ID}
		f := Failure{Timeout: true, NotRun: true, undelivered: true,
			Message: QueueTimeoutMessage(st.QueueTimeout, now.Sub(StreamIDTime(m.ID)))}
		o, mode, err := c.Fail(ctx, d, f)
		if err != nil {
			return n, dead, false, err
		}
		if o == Applied {
			n++
			if mode == FailDead {
				dead++
			}
		}
	}
	return n, dead, len(msgs) == limit, nil
}

// QueueTimeoutMessage is the error of a token that waited past its step's
// queue_timeout.
func QueueTimeoutMessage(limit, waited time.Duration) string {
	return fmt.Sprintf("not picked up within the step's queue_timeout of %s (waited %s)", limit, waited.Round(time.Millisecond))
}

// undeliveredStart is where the entries no consumer of group has read
// begin in stream key: just after the group's last delivered id, or the
// stream's start when the group does not exist yet; "" when the stream
// does not exist.
func (c *Client) undeliveredStart(ctx context.Context, key, group string) (string, error) {
	groups, err := c.rdb.XInfoGroups(ctx, key).Result()
	if err != nil {
		if redis.HasErrorPrefix(err, "no such key") || errors.Is(err, redis.Nil) {
			return "", nil
		}
		return "", fmt.Errorf("dsat: read consumer groups of %s: %w", key, err)
	}
	for _, g := range groups {
		if g.Name == group {
			return NextStreamID(g.LastDeliveredID), nil
		}
	}
	return "-", nil
}
