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

// Event is one change of a task's state. ID is its event id: the stream
// id of the entry that holds it, the same in the task's stream and in the
// partition firehose (see ParseEntry for entries that hold several).
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

// ParseEntry decodes an event stream entry. A script writes one entry per
// task it changes (lua/lib.lua, flush), with three fields: task; e, one
// line "<seq>|<event>|<attempt>|<at ms>|<step>|<worker>" per event; and d,
// one line of detail JSON per event. So END and the SENDs that follow it,
// or END and HAPPY_END, cost one entry. The last event of an entry has the
// entry's stream id as its ID; an earlier one, the k-th, has "<id>.<k>",
// so every event has its own resume position (EventIDLess orders them).
//
// Entries written before this format (one event each, in fields task, seq,
// ev, step, att, w, at, d) are read too.
func ParseEntry(m redis.XMessage) ([]Event, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	if _, packed := m.Values["e"]; !packed {
		if _, old := m.Values["ev"]; old {
			m.Values = map[string]any{"task": str("task"), "d": str("d"),
				"e": strings.Join([]string{str("seq"), str("ev"), str("att"), str("at"), str("step"), str("w")}, "|")}
		}
	}
	lines, details := strings.Split(str("e"), "\n"), strings.Split(str("d"), "\n")
	if len(details) != len(lines) {
		return nil, fmt.Errorf("dsat: event entry %s: %d events but %d details", m.ID, len(lines), len(details))
	}
	task := str("task")
	pipeline := ""
	if id, err := ParseTaskID(task); err == nil {
		pipeline = id.Partition.Pipeline
	}
	out := make([]Event, len(lines))
	for k, line := range lines {
		parts := strings.SplitN(line, "|", 6)
		if len(parts) != 6 {
			return nil, fmt.Errorf("dsat: event entry %s: malformed event %q", m.ID, line)
		}
		e := Event{ID: m.ID, Task: task, Pipeline: pipeline, Event: parts[1], Step: parts[4], Worker: parts[5],
			At: msTime(parts[3])}
		if k < len(lines)-1 {
			e.ID = m.ID + "." + strconv.Itoa(k+1)
		}
		var err error
		if e.Seq, err = strconv.ParseInt(parts[0], 10, 64); err != nil {
			return nil, fmt.Errorf("dsat: event entry %s: bad seq %q", m.ID, parts[0])
		}
		e.Attempt, _ = strconv.Atoi(parts[2])
		d := details[k]
		if d == "" || d == "[]" { // gopher-lua's cjson writes {} as []
			d = "{}"
		}
		e.Detail = json.RawMessage(d)
		out[k] = e
	}
	return out, nil
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

// ValidEventID reports whether s is an event id: a concrete stream id
// "ms-seq", or "ms-seq.k" (k >= 1) for an event that is not the last of
// its entry.
func ValidEventID(s string) bool {
	entry, sub, ok := strings.Cut(s, ".")
	if !ok {
		return ValidStreamID(s)
	}
	k, err := strconv.ParseUint(sub, 10, 32)
	return err == nil && k >= 1 && ValidStreamID(entry)
}

// splitEventID returns an event id's entry id and its position in the
// entry: k for "<id>.<k>", and -1 (after every event) for a plain id.
func splitEventID(id string) (entry string, k int) {
	entry, sub, ok := strings.Cut(id, ".")
	if !ok {
		return id, -1
	}
	n, _ := strconv.Atoi(sub)
	return entry, n
}

// EventEntryID is the stream id of the entry that holds the event id.
func EventEntryID(id string) string {
	entry, _ := splitEventID(id)
	return entry
}

// EventIDLess orders event ids: by entry, then by position in the entry
// (a plain entry id, the entry's last event, comes after its "<id>.<k>").
func EventIDLess(x, y string) bool {
	xe, xk := splitEventID(x)
	ye, yk := splitEventID(y)
	if xe != ye {
		return StreamIDLess(xe, ye)
	}
	return xk != -1 && (yk == -1 || xk < yk)
}

// EventsAfter expands entries into events and keeps those after afterID
// ("" keeps all): the entries of a range that starts at afterID's entry.
func EventsAfter(msgs []redis.XMessage, afterID string) ([]Event, error) {
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		evs, err := ParseEntry(m)
		if err != nil {
			return nil, err
		}
		for _, e := range evs {
			if afterID == "" || EventIDLess(afterID, e.ID) {
				out = append(out, e)
			}
		}
	}
	return out, nil
}

// RangeStart is the first stream id an XRANGE must read to get the events
// after the event id afterID: afterID's own entry when afterID is inside
// it, the next one otherwise.
func RangeStart(afterID string) string {
	entry, k := splitEventID(afterID)
	if k == -1 {
		return NextStreamID(entry)
	}
	return entry
}

// History returns the task's events after the event id afterID ("" for
// all), oldest first, at most count (0 for all).
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
		if !ValidEventID(afterID) {
			return nil, fmt.Errorf("dsat: bad event id %q: want <ms>-<seq> or <ms>-<seq>.<k>", afterID)
		}
		start = RangeStart(afterID)
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
	evs, err := EventsAfter(msgs, afterID)
	if count > 0 && int64(len(evs)) > count {
		evs = evs[:count] // the rest of the last entry comes with the next call
	}
	return evs, err
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
			if _, k := splitEventID(last); len(evs) == 256 || k != -1 {
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
