package dsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Event names (DESIGN §5).
const (
	EventInit      = "INIT"
	EventAck       = "ACK"
	EventEnd       = "END"
	EventError     = "ERROR"
	EventTimeout   = "TIMEOUT"
	EventRetry     = "RETRY"
	EventSend      = "SEND"
	EventHappyEnd  = "HAPPY_END"
	EventDead      = "DEAD"
	EventCancelled = "CANCELLED"
)

// FinalEvent reports whether an event ends a task (until a retry).
func FinalEvent(name string) bool {
	return name == EventHappyEnd || name == EventDead || name == EventCancelled
}

// Event is one change of a task's state. ID is its stream id, the same in
// the task's stream and in the partition firehose.
type Event struct {
	ID       string          `json:"-"`
	Task     string          `json:"task"`
	Pipeline string          `json:"pipeline"`
	Seq      int64           `json:"seq"`
	Event    string          `json:"event"`
	Step     string          `json:"step"`
	Attempt  int             `json:"attempt"`
	Worker   string          `json:"worker"`
	At       Time            `json:"at"`
	Detail   json.RawMessage `json:"detail"`
}

// ParseEvent decodes an event stream entry. An entry has three fields
// (lua/lib.lua, emit): task, e = "<seq>|<event>|<attempt>|<at ms>|<step>|<worker>"
// and d, the detail as JSON; packing the scalars into one field makes every
// event cheaper to write and to store.
func ParseEvent(m redis.XMessage) (Event, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	parts := strings.SplitN(str("e"), "|", 6)
	if len(parts) != 6 {
		return Event{}, fmt.Errorf("dsat: event %s: malformed entry %v", m.ID, m.Values)
	}
	e := Event{ID: m.ID, Task: str("task"), Event: parts[1], Step: parts[4], Worker: parts[5], At: msTime(parts[3])}
	var err error
	if e.Seq, err = strconv.ParseInt(parts[0], 10, 64); err != nil {
		return Event{}, fmt.Errorf("dsat: event %s: bad seq %q", m.ID, parts[0])
	}
	e.Attempt, _ = strconv.Atoi(parts[2])
	if id, err := ParseTaskID(e.Task); err == nil {
		e.Pipeline = id.Partition.Pipeline
	}
	d := str("d")
	if d == "" || d == "[]" { // gopher-lua's cjson writes {} as []
		d = "{}"
	}
	e.Detail = json.RawMessage(d)
	return e, nil
}

// ValidStreamID reports whether s is a concrete stream id "ms-seq" (not a
// special id such as $, +, - or >).
func ValidStreamID(s string) bool {
	a, b, ok := strings.Cut(s, "-")
	if !ok || len(s) > 41 {
		return false
	}
	_, e1 := strconv.ParseUint(a, 10, 64)
	_, e2 := strconv.ParseUint(b, 10, 64)
	return e1 == nil && e2 == nil
}

// NextStreamID is the smallest stream id after id (for exclusive ranges
// that work on every Redis and on miniredis).
func NextStreamID(id string) string {
	a, b, _ := strings.Cut(id, "-")
	n, _ := strconv.ParseUint(b, 10, 64)
	return a + "-" + strconv.FormatUint(n+1, 10)
}

// History returns the task's events after afterID ("" for all), oldest
// first, at most count (0 for all).
func (c *Client) History(ctx context.Context, id, afterID string, count int64) ([]Event, error) {
	tid, err := ParseTaskID(id)
	if err != nil {
		return nil, err
	}
	return c.readRange(ctx, c.keys.TaskEvents(tid.Partition, id), afterID, count)
}

func (c *Client) readRange(ctx context.Context, key, afterID string, count int64) ([]Event, error) {
	start := "-"
	if afterID != "" {
		if !ValidStreamID(afterID) {
			return nil, fmt.Errorf("dsat: bad event id %q: want <ms>-<seq>", afterID)
		}
		start = NextStreamID(afterID)
	}
	var msgs []redis.XMessage
	var err error
	if count > 0 {
		msgs, err = c.rdb.XRangeN(ctx, key, start, "+", count).Result()
	} else {
		msgs, err = c.rdb.XRange(ctx, key, start, "+").Result()
	}
	if err != nil {
		return nil, fmt.Errorf("dsat: read events: %w", err)
	}
	return parseEvents(msgs)
}

func parseEvents(msgs []redis.XMessage) ([]Event, error) {
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		e, err := ParseEvent(m)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

// Events yields the task's events after afterID ("" replays from the
// first), then follows new ones as they happen, and ends after the task's
// final event (HAPPY_END, DEAD or CANCELLED) or when ctx ends. Each pass of
// the follow loop blocks in Redis for at most a second, so cancelling ctx
// ends it promptly.
func (c *Client) Events(ctx context.Context, id, afterID string) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		tid, err := ParseTaskID(id)
		if err != nil {
			yield(Event{}, err)
			return
		}
		key := c.keys.TaskEvents(tid.Partition, id)
		if n, err := c.rdb.Exists(ctx, key, c.keys.Task(tid.Partition, id)).Result(); err != nil {
			yield(Event{}, fmt.Errorf("dsat: events: %w", err))
			return
		} else if n == 0 {
			yield(Event{}, fmt.Errorf("%w: %s", ErrTaskNotFound, id))
			return
		}
		last := afterID
		for ctx.Err() == nil {
			evs, err := c.readRange(ctx, key, last, 256)
			if err != nil {
				yield(Event{}, err)
				return
			}
			for _, e := range evs {
				last = e.ID
				if !yield(e, nil) || FinalEvent(e.Event) {
					return
				}
			}
			if len(evs) == 256 {
				continue
			}
			if last == "" {
				last = "0-0"
			}
			_, err = c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, last}, Count: 1, Block: time.Second}).Result()
			if err != nil && !errors.Is(err, redis.Nil) {
				if ctx.Err() != nil {
					return
				}
				yield(Event{}, fmt.Errorf("dsat: follow events: %w", err))
				return
			}
		}
	}
}
