package dsat

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// FirehoseEntry is one entry of a partition's firehose: the events of one
// script call. Events is nil for an entry that does not parse (skip it, but
// move past its ID).
type FirehoseEntry struct {
	ID     string
	Events []Event
}

func firehoseEntries(p Partition, msgs []redis.XMessage) []FirehoseEntry {
	out := make([]FirehoseEntry, len(msgs))
	for i, m := range msgs {
		out[i].ID = m.ID
		out[i].Events, _ = ParseEntry(m)
		for k := range out[i].Events {
			out[i].Events[k].Partition = p
		}
	}
	return out
}

// FirehoseLast returns the id of the newest entry of the partition's
// firehose ("0-0" when it is empty): follow it from there to see every
// later event.
func (c *Client) FirehoseLast(ctx context.Context, p Partition) (string, error) {
	last, err := c.rdb.XRevRangeN(ctx, c.keys.Firehose(p), "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("dsat: read firehose: %w", err)
	}
	if len(last) == 0 {
		return "0-0", nil
	}
	return last[0].ID, nil
}

// FirehoseFirst returns the id of the oldest entry the capped firehose
// still keeps ("" when it is empty).
func (c *Client) FirehoseFirst(ctx context.Context, p Partition) (string, error) {
	first, err := c.rdb.XRangeN(ctx, c.keys.Firehose(p), "-", "+", 1).Result()
	if err != nil {
		return "", fmt.Errorf("dsat: read firehose: %w", err)
	}
	if len(first) == 0 {
		return "", nil
	}
	return first[0].ID, nil
}

// FirehoseRange returns up to count entries of the partition's firehose
// that hold events after the event id after (see RangeStart), oldest
// first; their events may start before after (filter with EventIDLess).
func (c *Client) FirehoseRange(ctx context.Context, p Partition, after string, count int64) ([]FirehoseEntry, error) {
	msgs, err := c.rdb.XRangeN(ctx, c.keys.Firehose(p), RangeStart(after), "+", count).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: read firehose: %w", err)
	}
	return firehoseEntries(p, msgs), nil
}

// FirehoseRead waits up to block for entries of the partition's firehose
// after the entry id after, and returns up to count of them (none when the
// wait ended empty).
func (c *Client) FirehoseRead(ctx context.Context, p Partition, after string, count int64, block time.Duration) ([]FirehoseEntry, error) {
	res, err := c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{c.keys.Firehose(p), after}, Count: count, Block: block}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("dsat: follow firehose: %w", err)
	}
	return firehoseEntries(p, res[0].Messages), nil
}
