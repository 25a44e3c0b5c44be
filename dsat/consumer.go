package dsat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// Entry is one entry of a step stream as a consumer read it: a token
// envelope's fields (see ParseEnvelope), or nothing for an entry deleted
// while pending.
type Entry struct {
	Part   Partition
	ID     string
	Values map[string]any
}

// StepReader reads the streams of one step, over all of a pipeline
// version's partitions, as one consumer of the step's group: what a
// satellite's reader does. It is not safe for concurrent use.
type StepReader struct {
	c        *Client
	step     string
	consumer string
	parts    []Partition
	keys     []string
	cluster  bool
	rot      int // cluster round-robin position
}

// NewStepReader returns a reader of step's streams for consumer.
func (c *Client) NewStepReader(p *Pipeline, step, consumer string) *StepReader {
	r := &StepReader{c: c, step: step, consumer: consumer}
	for n := 0; n < p.Partitions; n++ {
		part := p.Partition(n)
		r.parts = append(r.parts, part)
		r.keys = append(r.keys, c.keys.Step(part, step))
	}
	_, r.cluster = c.rdb.(*redis.ClusterClient)
	return r
}

// Partitions is the number of partitions (streams) the reader covers.
func (r *StepReader) Partitions() int { return len(r.parts) }

// Partition is the n-th partition.
func (r *StepReader) Partition(n int) Partition { return r.parts[n] }

// IsNoGroup reports whether err says a step's consumer group is missing
// (the stream was flushed, evicted or deleted): create the groups again.
func IsNoGroup(err error) bool { return redis.HasErrorPrefix(err, "NOGROUP") }

// EnsureGroups creates the step's consumer group on every partition's
// stream (MKSTREAM; an existing group is fine).
func (r *StepReader) EnsureGroups(ctx context.Context) error {
	for _, key := range r.keys {
		err := r.c.rdb.XGroupCreateMkStream(ctx, key, r.step, "0").Err()
		if err != nil && !redis.HasErrorPrefix(err, "BUSYGROUP") {
			return fmt.Errorf("dsat: create consumer group %s on %s: %w", r.step, key, err)
		}
	}
	return nil
}

func (r *StepReader) entries(res []redis.XStream) []Entry {
	var out []Entry
	for _, st := range res {
		for i, key := range r.keys {
			if key != st.Stream {
				continue
			}
			for _, m := range st.Messages {
				out = append(out, Entry{Part: r.parts[i], ID: m.ID, Values: m.Values})
			}
		}
	}
	return out
}

func (r *StepReader) read(ctx context.Context, streams []string, count int, block time.Duration) ([]Entry, error) {
	res, err := r.c.rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: r.step, Consumer: r.consumer,
		Streams: streams, Count: int64(count), Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return r.entries(res), nil
}

// ReadOwn returns up to count of this consumer's pending entries of
// partition n after the entry id after ("0" for the first): a reply to a
// blocking read may have arrived after the client gave up.
func (r *StepReader) ReadOwn(ctx context.Context, n int, after string, count int) ([]Entry, error) {
	return r.read(ctx, []string{r.keys[n], after}, count, -1)
}

// ReadNew reads new entries, waiting up to block when there are none. On
// one Redis, one XREADGROUP covers every partition's stream (so a step
// holds one blocked connection) and returns up to count entries from each;
// on a cluster a command reaches one slot only: partitions are read
// round-robin without blocking, and a short blocking read waits on one
// when all were empty.
func (r *StepReader) ReadNew(ctx context.Context, count int, block time.Duration) ([]Entry, error) {
	if !r.cluster || len(r.keys) == 1 {
		args := make([]string, 0, 2*len(r.keys))
		args = append(args, r.keys...)
		for range r.keys {
			args = append(args, ">")
		}
		return r.read(ctx, args, count, block)
	}
	for i := 0; i < len(r.keys); i++ {
		k := (r.rot + i) % len(r.keys)
		res, err := r.read(ctx, []string{r.keys[k], ">"}, count, -1)
		if err != nil || len(res) > 0 {
			r.rot = k + 1
			return res, err
		}
	}
	r.rot++
	return r.read(ctx, []string{r.keys[r.rot%len(r.keys)], ">"}, count, min(block, 250*time.Millisecond))
}

// Claim takes over up to count entries of partition n that sat
// un-acknowledged longer than minIdle, scanning from the cursor start
// ("0-0" for a new scan); it returns them, the ids of pending entries
// whose payload was deleted, and the cursor to go on with ("0-0" when the
// scan is complete). One call scans at most 10×count entries.
func (r *StepReader) Claim(ctx context.Context, n int, minIdle time.Duration, start string, count int) (claimed []Entry, deleted []string, next string, err error) {
	msgs, next, deleted, err := r.c.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
		Stream: r.keys[n], Group: r.step, Consumer: r.consumer, MinIdle: minIdle, Start: start, Count: int64(count),
	}).Result()
	if err != nil {
		return nil, nil, "", err
	}
	claimed = make([]Entry, len(msgs))
	for i, m := range msgs {
		claimed[i] = Entry{Part: r.parts[n], ID: m.ID, Values: m.Values}
	}
	return claimed, deleted, next, nil
}

// Deliveries returns how many times each entry was delivered (0 when
// unknown), in one round trip: the poison-message counter.
func (r *StepReader) Deliveries(ctx context.Context, entries []Entry) []int64 {
	key := map[Partition]string{}
	for i, p := range r.parts {
		key[p] = r.keys[i]
	}
	cmds := make([]*redis.XPendingExtCmd, len(entries))
	_, _ = r.c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, e := range entries {
			cmds[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: key[e.Part], Group: r.step, Start: e.ID, End: e.ID, Count: 1})
		}
		return nil
	})
	out := make([]int64, len(entries))
	for i, cmd := range cmds {
		if pend, err := cmd.Result(); err == nil && len(pend) == 1 {
			out[i] = pend[0].RetryCount
		}
	}
	return out
}

// Keep renews this consumer's claim of entries it read and holds without
// beginning them (a step at its limits, or paused, keeps them in memory),
// in one round trip (renew.lua), so no reclaimer takes them over and their
// delivery counter does not grow while they wait. It returns whether each
// is still this consumer's: one that is not must be dropped.
func (r *StepReader) Keep(ctx context.Context, entries []Entry) []bool {
	key := map[Partition]string{}
	for i, p := range r.parts {
		key[p] = r.keys[i]
	}
	replies, errs := r.c.pipelineScripts(ctx, lua.Renew, len(entries), func(i int) ([]string, []any) {
		return []string{key[entries[i].Part]}, []any{r.step, r.consumer, entries[i].ID}
	})
	out := make([]bool, len(entries))
	for i := range entries {
		// An error keeps the entry: it is tried again at the next renewal.
		out[i] = errs[i] != nil || len(replies[i]) == 1 && replies[i][0] == int64(1)
	}
	return out
}

// PruneConsumers removes the step's consumers that have no pending entry,
// have been idle for at least idle and that keep does not want, and
// returns their names. A consumer with pending entries is never removed:
// XGROUP DELCONSUMER would make them unclaimable.
func (r *StepReader) PruneConsumers(ctx context.Context, idle time.Duration, keep func(name string) bool) []string {
	var removed []string
	for _, key := range r.keys {
		cs, err := r.c.rdb.XInfoConsumers(ctx, key, r.step).Result()
		if err != nil {
			continue
		}
		for _, c := range cs {
			if c.Pending > 0 || c.Idle < idle || keep(c.Name) {
				continue
			}
			if err := r.c.rdb.XGroupDelConsumer(ctx, key, r.step, c.Name).Err(); err == nil {
				removed = append(removed, c.Name)
			}
		}
	}
	return removed
}
