package httpapi

import (
	"encoding/json"
	"fmt"
	"net/http"
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
// first (or after Last-Event-ID), then live, ending after its current final
// event (a retried task's earlier DEAD does not end it).
func (a *API) taskEvents(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	tid, err := dsat.ParseTaskID(id)
	if err != nil {
		writeError(w, r, err)
		return
	}
	last := lastEventID(r)
	if last != "" && !dsat.ValidEventID(last) {
		badLastEventID(w, r, last)
		return
	}
	ctx := r.Context()
	evKey := a.c.Keys().TaskEvents(tid.Partition, id)
	first, err := a.c.Redis().XRangeN(ctx, evKey, "-", "+", 1).Result()
	if err != nil {
		writeError(w, r, err)
		return
	}
	if len(first) == 0 {
		writeError(w, r, fmt.Errorf("%w: %s", dsat.ErrTaskNotFound, id))
		return
	}
	// The task's last stored event: a resume past it is refused, and one at
	// it, when it ends the task, gets the final state instead of a stream
	// that waits for events that will not come.
	tail, err := a.c.Redis().XRevRangeN(ctx, evKey, "+", "-", 1).Result()
	if err != nil {
		writeError(w, r, err)
		return
	}
	if len(tail) == 0 {
		writeError(w, r, fmt.Errorf("%w: %s", dsat.ErrTaskNotFound, id))
		return
	}
	tailID, tailFinal := tail[0].ID, false
	if evs, err := dsat.ParseEntry(tail[0]); err == nil && len(evs) > 0 {
		tailFinal = dsat.FinalEvent(evs[len(evs)-1].Event)
	}
	if last != "" && dsat.EventIDLess(tailID, last) {
		writeProblem(w, r, http.StatusBadRequest, "bad-last-event-id",
			fmt.Sprintf("Last-Event-ID %q is after the task's last event (%s); reconnect with an id this feed sent, or without one to replay from the start", trimID(last), tailID))
		return
	}
	sub := newSubscriber(id)
	if _, err := a.hubs.subscribe(ctx, tid.Partition, sub); err != nil {
		writeError(w, r, err)
		return
	}
	defer a.hubs.unsubscribe(tid.Partition, sub)
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
	if last != "" && dsat.StreamIDLess(dsat.EventEntryID(last), first[0].ID) && !sendState() {
		return
	}
	// Replay what is stored after last; the subscription, taken first,
	// covers everything later, and ids already sent are skipped. A final
	// event ends the feed only when it is the last one stored: a task that
	// was retried after it went on, and so does its feed.
	replayed, endsTask := 0, false
	for {
		evs, err := a.c.History(ctx, id, last, 500)
		if err != nil {
			return
		}
		for _, e := range evs {
			last = e.ID
			replayed++
			endsTask = dsat.FinalEvent(e.Event)
			if sse.event(e.ID, e.Event, eventData(e)) != nil {
				return
			}
		}
		if len(evs) < 500 {
			break
		}
	}
	if endsTask {
		return
	}
	if replayed == 0 && tailFinal && last == tailID {
		// A resume at the task's final event: its state, and the end.
		sendState()
		return
	}
	a.follow(r, sse, sub, func(e *dsat.Event) (bool, error) {
		if !dsat.EventIDLess(last, e.ID) {
			return false, nil
		}
		last = e.ID
		err := sse.event(e.ID, e.Event, eventData(*e))
		return dsat.FinalEvent(e.Event), err
	})
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
		tid, err := dsat.ParseTaskID(e.Task)
		if err != nil {
			return false, nil
		}
		n, ok := index[tid.Partition]
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
	key := a.c.Keys().Firehose(p.Partition(n))
	first, err := a.c.Redis().XRangeN(ctx, key, "-", "+", 1).Result()
	if err != nil {
		return false
	}
	if len(first) == 1 && dsat.StreamIDLess(dsat.EventEntryID(pos[n]), first[0].ID) {
		b, _ := json.Marshal(map[string]any{"pipeline": p.Name, "partition": n,
			"reason": "events after the given id are no longer all kept; continuing from the oldest kept"})
		if sse.event(strings.Join(pos, ","), "reset", b) != nil {
			return false
		}
	}
	for {
		msgs, err := a.c.Redis().XRangeN(ctx, key, dsat.RangeStart(pos[n]), "+", 500).Result()
		if err != nil {
			return false
		}
		for _, m := range msgs {
			evs, err := dsat.ParseEntry(m)
			if err != nil {
				pos[n] = m.ID
				continue
			}
			for _, e := range evs {
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
