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

// Event names (docs/design.md §2, Events).
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

// Event is one change of a task's state. ID is its position in the feed
// it was read from: in a task's history (History, Events) its seq, in
// decimal; in a partition firehose an event id (see ParseEntry).
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
	// Partition is the partition whose firehose held the event (set by
	// FirehoseRange and FirehoseRead; a pipeline-level event has no task
	// id to tell it).
	Partition Partition `json:"-"`
}

// parseLine decodes one event line "<seq>|<event>|<attempt>|<at ms>|
// <step>|<worker>|<detail>" (lua/lib.lua, emit) of task.
func parseLine(task, pipeline, line string) (Event, error) {
	parts := strings.SplitN(line, "|", 7)
	if len(parts) != 7 {
		return Event{}, fmt.Errorf("dsat: malformed event %q", line)
	}
	return eventOf(task, pipeline, parts[:6], parts[6])
}

// eventOf makes an event of its fields seq, event, attempt, at, step and
// worker, and its detail.
func eventOf(task, pipeline string, f []string, d string) (Event, error) {
	seq, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		return Event{}, fmt.Errorf("dsat: event %q: bad seq", strings.Join(f, "|"))
	}
	e := Event{ID: f[0], Task: task, Pipeline: pipeline, Seq: seq, Event: f[1], Step: f[4],
		Worker: f[5], At: msTime(f[3]), Detail: detail(d)}
	e.Attempt, _ = strconv.Atoi(f[2])
	return e, nil
}

func detail(d string) json.RawMessage {
	if d == "" || d == "[]" { // gopher-lua's cjson writes {} as []
		d = "{}"
	}
	return json.RawMessage(d)
}

func pipelineOf(task string) string {
	if id, err := ParseTaskID(task); err == nil {
		return id.Partition.Pipeline
	}
	return ""
}

// ParseLog decodes a task's log: one event line per line, oldest first.
func ParseLog(task, log string) ([]Event, error) {
	pipeline := pipelineOf(task)
	lines := strings.Split(strings.TrimSuffix(log, "\n"), "\n")
	if log == "" {
		lines = nil
	}
	out := make([]Event, 0, len(lines))
	for _, line := range lines {
		e, err := parseLine(task, pipeline, line)
		if err != nil {
			return nil, fmt.Errorf("dsat: event log of %s: %w", task, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// ParseEntry decodes a firehose entry. A script writes one entry per call
// (lua/lib.lua, publish) with one field, x: for each task it changed a line
// "@<task>", then the task's event lines (as in its log). A line
// "!<pipeline>" starts pipeline-level events instead (EventBreaker: Task
// "", Seq 0), written by PublishBreaker. The last event of an
// entry has the entry's stream id as its ID; an earlier one, the k-th, has
// "<id>.<k>", so every event has its own resume position (EventIDLess
// orders them).
//
// Entries of an older version (one entry per task: fields task, e and d,
// one line each per event) are read too, and so are the task streams that
// held a task's events before its log.
func ParseEntry(m redis.XMessage) ([]Event, error) {
	str := func(k string) string { s, _ := m.Values[k].(string); return s }
	id := func(out []Event) {
		for k := range out {
			if k < len(out)-1 {
				out[k].ID = m.ID + "." + strconv.Itoa(k+1)
			} else {
				out[k].ID = m.ID
			}
		}
	}
	if x, ok := m.Values["x"].(string); ok {
		lines := strings.Split(x, "\n")
		out := make([]Event, 0, len(lines))
		task, pipeline := "", ""
		level := false // pipeline-level events (EventBreaker): no task
		for _, line := range lines {
			if t, ok := strings.CutPrefix(line, "@"); ok {
				task, pipeline, level = t, pipelineOf(t), false
				continue
			}
			if pl, ok := strings.CutPrefix(line, pipelineMark); ok {
				task, pipeline, level = "", pl, ValidName(pl)
				continue
			}
			e, err := parseLine(task, pipeline, line)
			if err != nil || task == "" && !level {
				return nil, fmt.Errorf("dsat: event entry %s: an event of no task, or %w", m.ID, err)
			}
			out = append(out, e)
		}
		id(out)
		return out, nil
	}
	lines, details := strings.Split(str("e"), "\n"), strings.Split(str("d"), "\n")
	if len(details) != len(lines) {
		return nil, fmt.Errorf("dsat: event entry %s: %d events but %d details", m.ID, len(lines), len(details))
	}
	task := str("task")
	pipeline := pipelineOf(task)
	out := make([]Event, len(lines))
	for k, line := range lines {
		f := strings.SplitN(line, "|", 6) // the worker, last, may hold "|" here
		if len(f) != 6 {
			return nil, fmt.Errorf("dsat: event entry %s: malformed event %q", m.ID, line)
		}
		e, err := eventOf(task, pipeline, f, details[k])
		if err != nil {
			return nil, fmt.Errorf("dsat: event entry %s: %w", m.ID, err)
		}
		out[k] = e
	}
	id(out)
	return out, nil
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

// History returns the task's events with a seq after afterID (a seq in
// decimal, as History gives in Event.ID; "" for all), oldest first, at
// most count (0 for all). An unknown task has no events.
func (c *Client) History(ctx context.Context, id, afterID string, count int64) ([]Event, error) {
	tid, err := ParseTaskID(id)
	if err != nil {
		return nil, err
	}
	var after int64
	if afterID != "" {
		if after, err = strconv.ParseInt(afterID, 10, 64); err != nil || after < 0 {
			return nil, fmt.Errorf("dsat: bad event position %q: want the seq of an event", afterID)
		}
	}
	var logCmd *redis.StringCmd
	var oldCmd *redis.XMessageSliceCmd
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		oldCmd = p.XRange(ctx, c.keys.taskEventsV1(tid.Partition, id), "-", "+")
		logCmd = p.Get(ctx, c.keys.TaskLog(tid.Partition, id))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dsat: read events: %w", err)
	}
	var all []Event
	for _, m := range oldCmd.Val() { // written before the log (an older version)
		evs, err := ParseEntry(m)
		if err != nil {
			return nil, err
		}
		all = append(all, evs...)
	}
	logged, err := ParseLog(id, logCmd.Val())
	if err != nil {
		return nil, err
	}
	all = append(all, logged...)
	out := all[:0]
	for _, e := range all {
		e.ID = strconv.FormatInt(e.Seq, 10)
		if e.Seq > after && (count <= 0 || int64(len(out)) < count) {
			out = append(out, e)
		}
	}
	return out, nil
}

// Events yields the task's events after afterID (a seq, as History gives;
// "" replays from the first), then follows new ones as they happen, and
// ends after the task's final event (HAPPY_END, DEAD or CANCELLED) when it
// is the task's latest, or when ctx ends. It follows the partition's
// firehose; each read blocks in Redis for at most a second, so cancelling
// ctx ends it promptly.
func (c *Client) Events(ctx context.Context, id, afterID string) iter.Seq2[Event, error] {
	return func(yield func(Event, error) bool) {
		tid, err := ParseTaskID(id)
		if err != nil {
			yield(Event{}, err)
			return
		}
		pos, err := c.FirehoseLast(ctx, tid.Partition) // before the history: nothing falls between
		if err != nil {
			yield(Event{}, err)
			return
		}
		evs, err := c.History(ctx, id, afterID, 0)
		if err != nil {
			yield(Event{}, err)
			return
		}
		if len(evs) == 0 && afterID == "" {
			yield(Event{}, fmt.Errorf("%w: %s", ErrTaskNotFound, id))
			return
		}
		var seq int64
		if afterID != "" {
			seq, _ = strconv.ParseInt(afterID, 10, 64)
		}
		for i, e := range evs {
			seq = e.Seq
			if !yield(e, nil) || FinalEvent(e.Event) && i == len(evs)-1 {
				return
			}
		}
		key := c.keys.Firehose(tid.Partition)
		for ctx.Err() == nil {
			res, err := c.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{key, pos}, Count: 500, Block: time.Second}).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				if ctx.Err() == nil {
					yield(Event{}, fmt.Errorf("dsat: follow events: %w", err))
				}
				return
			}
			for _, m := range res[0].Messages {
				pos = m.ID
				evs, err := ParseEntry(m)
				if err != nil {
					continue
				}
				for _, e := range evs {
					if e.Task != id || e.Seq <= seq {
						continue
					}
					seq = e.Seq
					e.ID = strconv.FormatInt(e.Seq, 10)
					if !yield(e, nil) || FinalEvent(e.Event) {
						return
					}
				}
			}
		}
	}
}
