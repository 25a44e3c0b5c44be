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

// historyChunk is how many bytes of a task's event log one read takes
// (HistoryPages): a feed replaying a long history holds about this much
// of it at a time, not the whole log (review 8: a map of 55,000 items has
// a 15 MB log, and each feed that replayed it whole held ~200 MB).
const historyChunk = 256 << 10

// History returns the task's events with a seq after afterID (a seq in
// decimal, as History gives in Event.ID; "" for all), oldest first, at
// most count (0 for all). An unknown task has no events. It holds the
// whole history: HistoryPages reads a long one a page at a time.
func (c *Client) History(ctx context.Context, id, afterID string, count int64) ([]Event, error) {
	var out []Event
	_, err := c.HistoryPages(ctx, id, afterID, func(page []Event) bool {
		for _, e := range page {
			if count > 0 && int64(len(out)) >= count {
				return false
			}
			out = append(out, e)
		}
		return true
	})
	return out, err
}

// HistoryPages calls page with the task's events with a seq after afterID
// (as History), oldest first, a page at a time: the events of one read of
// 256 KiB of its log, so a long history is never held whole;
// page returns false to stop. last is the last event read (whatever
// afterID), Seq 0 for an unknown task. A short history is one round trip,
// as History's always was.
func (c *Client) HistoryPages(ctx context.Context, id, afterID string, page func([]Event) bool) (last Event, err error) {
	tid, err := ParseTaskID(id)
	if err != nil {
		return Event{}, err
	}
	var after int64
	if afterID != "" {
		if after, err = strconv.ParseInt(afterID, 10, 64); err != nil || after < 0 {
			return Event{}, fmt.Errorf("dsat: bad event position %q: want the seq of an event", afterID)
		}
	}
	logKey, chunkLen := c.keys.TaskLog(tid.Partition, id), int64(historyChunk)
	if c.historyChunk > 0 {
		chunkLen = c.historyChunk
	}
	var logCmd *redis.StringCmd
	var oldCmd *redis.XMessageSliceCmd
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		oldCmd = p.XRange(ctx, c.keys.taskEventsV1(tid.Partition, id), "-", "+")
		logCmd = p.GetRange(ctx, logKey, 0, chunkLen-1)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return Event{}, fmt.Errorf("dsat: read events: %w", err)
	}
	emit := func(evs []Event) bool {
		out := evs[:0]
		for _, e := range evs {
			last = e
			e.ID = strconv.FormatInt(e.Seq, 10)
			if e.Seq > after {
				out = append(out, e)
			}
		}
		if len(evs) > 0 {
			last.ID = strconv.FormatInt(last.Seq, 10)
		}
		return len(out) == 0 || page(out)
	}
	var old []Event
	for _, m := range oldCmd.Val() { // written before the log (an older version)
		evs, err := ParseEntry(m)
		if err != nil {
			return Event{}, err
		}
		old = append(old, evs...)
	}
	if !emit(old) {
		return last, nil
	}
	// The scripts append whole lines; a read may end inside one, which the
	// next read completes.
	chunk, off, pending := logCmd.Val(), int64(0), ""
	for {
		off += int64(len(chunk))
		data := pending + chunk
		cut := strings.LastIndexByte(data, '\n') + 1
		pending = data[cut:]
		evs, err := ParseLog(id, data[:cut])
		if err != nil {
			return Event{}, err
		}
		if !emit(evs) {
			return last, nil
		}
		if int64(len(chunk)) < chunkLen {
			return last, nil
		}
		if chunk, err = c.rdb.GetRange(ctx, logKey, off, off+chunkLen-1).Result(); err != nil && !errors.Is(err, redis.Nil) {
			return Event{}, fmt.Errorf("dsat: read events: %w", err)
		}
	}
}

// LastEvent returns the task's latest event (Seq 0 for an unknown task),
// reading only the end of its log: one round trip, whatever its length.
func (c *Client) LastEvent(ctx context.Context, id string) (Event, error) {
	tid, err := ParseTaskID(id)
	if err != nil {
		return Event{}, err
	}
	logKey := c.keys.TaskLog(tid.Partition, id)
	first := int64(4096)
	if c.historyChunk > 0 {
		first = c.historyChunk
	}
	for n := first; ; n *= 4 {
		var tailCmd *redis.StringCmd
		var oldCmd *redis.XMessageSliceCmd
		_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			tailCmd = p.GetRange(ctx, logKey, -n, -1)
			oldCmd = p.XRevRangeN(ctx, c.keys.taskEventsV1(tid.Partition, id), "+", "-", 1)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return Event{}, fmt.Errorf("dsat: read events: %w", err)
		}
		var evs []Event
		if s := tailCmd.Val(); s != "" {
			body := strings.TrimSuffix(s, "\n")
			i := strings.LastIndexByte(body, '\n')
			if i < 0 && int64(len(s)) == n {
				continue // the last line is longer than what was read
			}
			evs, err = ParseLog(id, body[i+1:]+"\n")
		} else if old := oldCmd.Val(); len(old) > 0 { // only an older version's stream
			evs, err = ParseEntry(old[0])
		}
		if err != nil || len(evs) == 0 {
			return Event{}, err
		}
		e := evs[len(evs)-1]
		e.ID = strconv.FormatInt(e.Seq, 10)
		return e, nil
	}
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
		var seq int64
		if afterID != "" {
			seq, _ = strconv.ParseInt(afterID, 10, 64)
		}
		stopped, yielded := false, false
		tail, err := c.HistoryPages(ctx, id, afterID, func(page []Event) bool {
			for _, e := range page {
				seq, yielded = e.Seq, true
				if !yield(e, nil) {
					stopped = true
					return false
				}
			}
			return true
		})
		switch {
		case stopped:
			return
		case err != nil:
			yield(Event{}, err)
			return
		case tail.Seq == 0 && afterID == "":
			yield(Event{}, fmt.Errorf("%w: %s", ErrTaskNotFound, id))
			return
		case yielded && tail.Seq == seq && FinalEvent(tail.Event):
			return // what it yielded ends with the task's final event
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
