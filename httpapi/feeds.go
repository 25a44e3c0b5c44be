package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/dsat-dev/dsat/dsat"
)

// lastEventID reads Last-Event-ID (header, as EventSource resends it, or
// ?last_event_id=) and checks its form.
func lastEventID(r *http.Request) string {
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		return v
	}
	return r.URL.Query().Get("last_event_id")
}

func badLastEventID(w http.ResponseWriter, r *http.Request, v string) {
	writeProblem(w, r, http.StatusBadRequest, "bad-last-event-id",
		fmt.Sprintf("Last-Event-ID %q is not an id this feed sent (<ms>-<seq>); reconnect without it to replay from the start", trimID(v)))
}

// openStream applies the stream caps and starts the SSE response. It
// returns a release func, or nil after writing the problem.
func (a *API) openStream(w http.ResponseWriter, r *http.Request) (*sseWriter, func()) {
	client := middleware.GetClientIP(r.Context())
	switch a.limiter.acquire(client) {
	case http.StatusTooManyRequests:
		w.Header().Set("Retry-After", "5")
		writeProblem(w, r, http.StatusTooManyRequests, "too-many-streams", fmt.Sprintf("this address already has %d open event streams; close one first", a.cfg.MaxStreamsPerClient))
		return nil, nil
	case http.StatusServiceUnavailable:
		w.Header().Set("Retry-After", "5")
		writeProblem(w, r, http.StatusServiceUnavailable, "too-many-streams", "the server has too many open event streams; retry later")
		return nil, nil
	}
	sse, err := startSSE(w, a.cfg.WriteTimeout)
	a.cfg.Metrics.streams.Inc()
	release := func() { a.cfg.Metrics.streams.Dec(); a.limiter.release(client) }
	if err != nil {
		release()
		return nil, nil
	}
	return sse, release
}

func eventData(e dsat.Event) []byte {
	b, _ := json.Marshal(e)
	return b
}

// taskEvents is GET /v1/tasks/{id}/events: the task's events from the
// first (or after Last-Event-ID, an event's seq), then live, ending after
// its current final event (a retried task's earlier DEAD does not end it).
func (a *API) taskEvents(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	tid, err := dsat.ParseTaskID(id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	last, reset, ok := taskFeedPosition(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	// Subscribe first: every event after the history read comes live, and
	// events seen in both are told apart by their seq.
	sub := newSubscriber(id)
	if _, err := a.hubs.subscribe(ctx, tid.Partition, sub); err != nil {
		writeError(w, r, err)
		return
	}
	defer a.hubs.unsubscribe(tid.Partition, sub)
	tail, err := a.c.LastEvent(ctx, id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if tail.Seq == 0 {
		writeError(w, r, fmt.Errorf("%w: %s", dsat.ErrTaskNotFound, id))
		return
	}
	if last > tail.Seq {
		writeProblem(w, r, http.StatusBadRequest, "bad-last-event-id",
			fmt.Sprintf("Last-Event-ID %d is after the task's last event (%d); reconnect with an id this feed sent, or without one to replay from the start", last, tail.Seq))
		return
	}
	sse, release := a.openStream(w, r)
	if sse == nil {
		return
	}
	defer release()

	sendState := func() bool {
		st, err := a.c.Get(ctx, id)
		if err != nil {
			return false
		}
		b, _ := json.Marshal(st)
		return sse.event("", "reset", b) == nil
	}
	if reset && !sendState() {
		return
	}
	if last > 0 && last == tail.Seq && dsat.FinalEvent(tail.Event) {
		// A resume at the task's final event: its state, and the end.
		sendState()
		return
	}
	// Replay what is stored after last, a page at a time (a long history
	// is never held whole). A final event ends the feed only when it is
	// the last one stored: a task that was retried after it went on, and
	// so does its feed.
	broken := false
	end, err := a.c.HistoryPages(ctx, id, strconv.FormatInt(last, 10), func(page []dsat.Event) bool {
		for _, e := range page {
			last = e.Seq
			if sse.event(e.ID, e.Event, eventData(e)) != nil {
				broken = true
				return false
			}
		}
		return true
	})
	// Also the end: a task gone since the first look (expired, purged:
	// no event read), or a read that failed (the client reconnects with
	// Last-Event-ID and gets the error then).
	if broken || err != nil || end.Seq == 0 || dsat.FinalEvent(end.Event) && end.Seq == last {
		return
	}
	a.follow(r, sse, sub, func(e *dsat.Event) (bool, error) {
		if e.Seq <= last {
			return false, nil
		}
		last = e.Seq
		err := sse.event(strconv.FormatInt(e.Seq, 10), e.Event, eventData(*e))
		return dsat.FinalEvent(e.Event), err
	})
}

// taskFeedPosition reads a task feed's Last-Event-ID: the seq of the last
// event the client has (0: none). An id of the former form (a stream id,
// from a feed of an older version) asks for a reset: the task's state,
// then every event. Anything else is a 400 (written; ok false).
func taskFeedPosition(w http.ResponseWriter, r *http.Request) (last int64, reset, ok bool) {
	v := lastEventID(r)
	if v == "" {
		return 0, false, true
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
		return n, false, true
	}
	if dsat.ValidEventID(v) {
		return 0, true, true
	}
	writeProblem(w, r, http.StatusBadRequest, "bad-last-event-id",
		fmt.Sprintf("Last-Event-ID %q is not an id this feed sent (the seq of an event); reconnect without it to replay from the start", trimID(v)))
	return 0, false, false
}

// follow sends live events until the client leaves, the API closes, the
// subscriber overflows, or send reports the end.
func (a *API) follow(r *http.Request, sse *sseWriter, sub *subscriber, send func(*dsat.Event) (bool, error)) {
	hb := time.NewTicker(a.cfg.Heartbeat)
	defer hb.Stop()
	for {
		select {
		case e := <-sub.ch:
			end, err := send(e)
			if end || err != nil {
				return
			}
		case <-hb.C:
			if sse.comment("heartbeat") != nil {
				return
			}
		case <-sub.overflow:
			return // the client fell behind; it resumes with Last-Event-ID
		case <-r.Context().Done():
			return
		case <-a.closing:
			return
		}
	}
}

// firehose is GET /v1/events?pipeline=: every event of the pipeline's
// partitions, from new events on (or after Last-Event-ID). With several
// partitions the SSE id is a cursor of one stream id per partition, joined
// by commas.
func (a *API) firehose(w http.ResponseWriter, r *http.Request) {
	name := r.URL.Query().Get("pipeline")
	if name == "" {
		writeProblem(w, r, http.StatusBadRequest, "missing-pipeline", "add ?pipeline=<name>; GET /v1/pipelines lists them")
		return
	}
	p, err := a.c.Pipeline(name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	var cursor []string
	if v := lastEventID(r); v != "" {
		cursor = strings.Split(v, ",")
		ok := len(cursor) == p.Partitions
		for _, c := range cursor {
			ok = ok && dsat.ValidEventID(c)
		}
		if !ok {
			badLastEventID(w, r, v)
			return
		}
	}
	ctx := r.Context()
	sub := newSubscriber("")
	pos := make([]string, p.Partitions)
	index := map[dsat.Partition]int{}
	for n := 0; n < p.Partitions; n++ {
		part := p.Partition(n)
		index[part] = n
		at, err := a.hubs.subscribe(ctx, part, sub)
		if err != nil {
			writeError(w, r, err)
			return
		}
		defer a.hubs.unsubscribe(part, sub)
		pos[n] = at
	}
	sse, release := a.openStream(w, r)
	if sse == nil {
		return
	}
	defer release()
	id := func() string { return strings.Join(pos, ",") }
	send := func(n int, e dsat.Event) error {
		pos[n] = e.ID
		return sse.event(id(), e.Event, eventData(e))
	}
	if cursor != nil {
		for n := range pos {
			pos[n] = cursor[n]
		}
		for n := range pos {
			if !a.replayPartition(r, sse, p, n, pos, send) {
				return
			}
		}
	}
	a.follow(r, sse, sub, func(e *dsat.Event) (bool, error) {
		n, ok := index[e.Partition] // a pipeline-level event (BREAKER) has no task id
		if !ok || !dsat.EventIDLess(pos[n], e.ID) {
			return false, nil
		}
		return false, send(n, *e)
	})
}

// replayPartition sends the stored firehose events of partition n after
// pos[n]; when pos[n] is older than what the capped firehose keeps it first
// sends a reset event.
func (a *API) replayPartition(r *http.Request, sse *sseWriter, p *dsat.Pipeline, n int, pos []string, send func(int, dsat.Event) error) bool {
	ctx := r.Context()
	part := p.Partition(n)
	first, err := a.c.FirehoseFirst(ctx, part)
	if err != nil {
		return false
	}
	if first != "" && dsat.StreamIDLess(dsat.EventEntryID(pos[n]), first) {
		b, _ := json.Marshal(map[string]any{"pipeline": p.Name, "partition": n,
			"reason": "events after the given id are no longer all kept; continuing from the oldest kept"})
		if sse.event(strings.Join(pos, ","), "reset", b) != nil {
			return false
		}
	}
	for {
		msgs, err := a.c.FirehoseRange(ctx, part, pos[n], 500)
		if err != nil {
			return false
		}
		for _, m := range msgs {
			if m.Events == nil {
				pos[n] = m.ID
				continue
			}
			for _, e := range m.Events {
				if !dsat.EventIDLess(pos[n], e.ID) {
					continue // sent before the client reconnected
				}
				if send(n, e) != nil {
					return false
				}
			}
		}
		if len(msgs) < 500 {
			return true
		}
	}
}
