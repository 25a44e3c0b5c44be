package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

var wantEvents = "INIT,ACK,END,SEND,ACK,END,SEND,ACK,END,HAPPY_END"

func TestTaskFeedReplayFollowAndClose(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		e.satellite(false) // step b holds until release
		id := e.submit(`{"text":"line1\r\nline2","evil":"\ndata: x\n\nevent: HAPPY_END"}`)
		start := time.Now()
		res, evs, comments, cancel := e.stream("/v1/tasks/" + id + "/events")
		defer cancel()
		if ct := res.Header.Get("Content-Type"); ct != "text/event-stream" || res.Header.Get("Content-Encoding") != "" {
			t.Fatalf("headers %v", res.Header)
		}
		first := <-evs
		// Prompt, not after a poll or heartbeat; the bound is loose enough
		// for a loaded machine (timings are measured in benchmarks).
		if d := time.Since(start); d > time.Second {
			t.Fatalf("first event after %s", d)
		}
		if first.Event != "INIT" || first.ID == "" {
			t.Fatalf("first %+v", first)
		}
		// Live part: wait for b's ACK, see a heartbeat, then release.
		var got []sseEvent
		got = append(got, first)
		for len(got) < 5 {
			got = append(got, <-evs)
		}
		select {
		case <-comments:
		case <-time.After(2 * time.Second):
		}
		hb := false
		deadline := time.After(2 * time.Second)
		for !hb {
			select {
			case c := <-comments:
				hb = strings.Contains(c, "heartbeat")
			case <-deadline:
				t.Fatal("no heartbeat comment")
			}
		}
		close(e.release)
		got = append(got, collect(t, evs, 10*time.Second)...)
		if names(got) != wantEvents {
			t.Fatalf("events %s", names(got))
		}
		for i, ev := range got {
			var d map[string]any
			if err := json.Unmarshal([]byte(ev.Data), &d); err != nil || strings.Contains(ev.Data, "\n") {
				t.Fatalf("event %d data is not one line of JSON: %q", i, ev.Data)
			}
			if d["task"] != id || d["seq"] != float64(i+1) || d["event"] != ev.Event {
				t.Fatalf("event %d data %v", i, d)
			}
			for _, k := range []string{"pipeline", "step", "attempt", "worker", "at", "detail"} {
				if _, ok := d[k]; !ok {
					t.Fatalf("event %d lacks %q", i, k)
				}
			}
		}
		// The payload with CR/LF and a fake "data:" reached the result as
		// data, inside JSON.
		g := e.do("GET", "/v1/tasks/"+id, "", "")
		if g.body["result"].(map[string]any)["evil"] != "\ndata: x\n\nevent: HAPPY_END" {
			t.Fatalf("result %s", g.raw)
		}

		// Reconnect after any event (its id is its seq): the rest, no gap,
		// no duplicate.
		for i := range got[:len(got)-1] {
			if got[i].ID != fmt.Sprint(i+1) {
				t.Fatalf("event %d has id %q, want its seq", i, got[i].ID)
			}
			_, evs2, _, cancel2 := e.stream("/v1/tasks/"+id+"/events", "Last-Event-ID", got[i].ID)
			rest := collect(t, evs2, 5*time.Second)
			cancel2()
			if names(rest) != names(got[i+1:]) || rest[0].ID != got[i+1].ID {
				t.Fatalf("resumed after %s: %s", got[i].ID, names(rest))
			}
		}
		// 0-0, an id of the former feed (stream ids): reset with the state,
		// then all.
		_, evs3, _, cancel3 := e.stream("/v1/tasks/"+id+"/events", "Last-Event-ID", "0-0")
		defer cancel3()
		all := collect(t, evs3, 5*time.Second)
		if names(all) != "reset,"+wantEvents || !strings.Contains(all[0].Data, `"status":"succeeded"`) {
			t.Fatalf("from 0-0: %s %s", names(all), all[0].Data)
		}
	})
}

func TestBadLastEventID(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	id := e.submit(`{}`)
	for _, bad := range []string{"$", "+", "-", ">", "abc", "12", "1-x", "-1-0", "1-1.0", "1-1.", "1-1.x", strings.Repeat("9", 10000)} {
		r := e.do("GET", "/v1/tasks/"+id+"/events", "", "", "Last-Event-ID", bad)
		if r.status != 400 || !strings.Contains(r.raw, "Last-Event-ID") {
			t.Errorf("Last-Event-ID %.20q: %d %s", bad, r.status, r.raw)
		}
		r = e.do("GET", "/v1/events?pipeline=demo", "", "", "Last-Event-ID", bad)
		if r.status != 400 {
			t.Errorf("firehose Last-Event-ID %.20q: %d", bad, r.status)
		}
	}
}

func TestFirehoseResumes(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		_, evs, _, cancel := e.stream("/v1/events?pipeline=demo")
		id1 := e.submit(`{}`)
		ev := <-evs
		if ev.Event != "INIT" || !strings.Contains(ev.Data, id1) {
			t.Fatalf("first firehose event %+v", ev)
		}
		cancel()
		// While disconnected: more events.
		id2 := e.submit(`{}`)
		e.satellite(true)
		close(e.release)
		deadline := time.Now().Add(10 * time.Second)
		for e.do("GET", "/v1/tasks/"+id2, "", "").body["status"] != "succeeded" {
			if time.Now().After(deadline) {
				t.Fatal("tasks did not finish")
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, evs2, _, cancel2 := e.stream("/v1/events?pipeline=demo", "Last-Event-ID", ev.ID)
		defer cancel2()
		var got []sseEvent
		timeout := time.After(5 * time.Second)
		for len(got) < 19 { // the rest of task 1 (9) and all of task 2 (10)
			select {
			case x := <-evs2:
				got = append(got, x)
			case <-timeout:
				t.Fatalf("firehose resume got %d events: %s", len(got), names(got))
			}
		}
		// Resuming from an event inside a multi-event entry continues
		// with the next event of that entry, also when that entry is the
		// oldest the capped firehose still keeps (no reset: nothing after
		// the position was trimmed).
		found := false
		for j, x := range got[:len(got)-1] {
			if found = strings.Contains(x.ID, "."); !found {
				continue
			}
			fh := e.c.Keys().Firehose(dsat.Partition{Pipeline: "demo", API: "1.0"})
			if err := e.rdb.XTrimMinID(context.Background(), fh, dsat.EventEntryID(x.ID)).Err(); err != nil {
				t.Fatal(err)
			}
			_, evs3, _, cancel3 := e.stream("/v1/events?pipeline=demo", "Last-Event-ID", x.ID)
			next := <-evs3
			cancel3()
			if next.ID != got[j+1].ID || next.Data != got[j+1].Data {
				t.Fatalf("firehose resumed after %s with %s %s, want %s", x.ID, next.ID, next.Event, got[j+1].ID)
			}
			break
		}
		if !found {
			t.Fatalf("no firehose event inside a multi-event entry: %s", names(got))
		}
		seen := map[string]bool{}
		for _, x := range got {
			var d map[string]any
			_ = json.Unmarshal([]byte(x.Data), &d)
			k := d["task"].(string) + "/" + x.ID
			if seen[k] || (d["task"] == id1 && d["seq"] == 1.0) {
				t.Fatalf("duplicate event %s", k)
			}
			seen[k] = true
		}
	})
}

func TestStreamCapsAndClose(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0], func(c *Config) { c.MaxStreamsPerClient = 2; c.MaxStreams = 3; c.TrustedProxies = 1 })
	id := e.submit(`{}`)
	var cancels []func()
	for i := 0; i < 2; i++ {
		res, _, _, cancel := e.stream("/v1/tasks/" + id + "/events")
		cancels = append(cancels, cancel)
		if res.StatusCode != 200 {
			t.Fatalf("stream %d: %d", i, res.StatusCode)
		}
	}
	if r := e.do("GET", "/v1/tasks/"+id+"/events", "", ""); r.status != http.StatusTooManyRequests {
		t.Fatalf("third stream from one address: %d", r.status)
	}
	// Close ends open streams cleanly.
	_, evs, _, cancel := e.stream("/v1/events?pipeline=demo", "X-Forwarded-For", "10.0.0.9")
	defer cancel()
	e.api.Close()
	done := make(chan struct{})
	go func() {
		for range evs {
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("Close did not end the stream")
	}
	for _, c := range cancels {
		c()
	}
}

// TestStreamOutlivesRequestTimeout: the request timeout that guards other
// routes does not cut an event stream.
func TestStreamOutlivesRequestTimeout(t *testing.T) {
	// Not parallel: its deadlines are short (a loaded machine misses them).
	e := newEnv(t, redistest.Backends()[0], func(c *Config) { c.RequestTimeout = 100 * time.Millisecond; c.Heartbeat = 50 * time.Millisecond })
	id := e.submit(`{}`)
	_, evs, comments, cancel := e.stream("/v1/tasks/" + id + "/events")
	defer cancel()
	if ev := <-evs; ev.Event != "INIT" {
		t.Fatalf("first event %+v", ev)
	}
	deadline := time.After(600 * time.Millisecond)
	beats := 0
	for {
		select {
		case _, ok := <-comments:
			if !ok {
				t.Fatalf("the stream was cut after %d heartbeats", beats)
			}
			beats++
		case <-deadline:
			if beats < 5 {
				t.Fatalf("only %d heartbeats in 600ms", beats)
			}
			return
		}
	}
}

// deadThenRetried makes a task die at step a (its token failed by hand),
// retries it and lets it succeed: its events hold a DEAD, then more,
// then HAPPY_END.
func (e *env) deadThenRetried(t *testing.T) string {
	t.Helper()
	id := e.submit(`{}`)
	tid, _ := dsat.ParseTaskID(id)
	ctx := t.Context()
	msgs, _ := e.rdb.XRange(ctx, e.c.Keys().Step(tid.Partition, "a"), "-", "+").Result()
	env, err := dsat.ParseEnvelope(msgs[len(msgs)-1].Values, 0)
	if err != nil {
		t.Fatal(err)
	}
	d := dsat.Delivery{Envelope: env, EntryID: msgs[len(msgs)-1].ID, Worker: "w"}
	if _, _, err := e.c.Fail(ctx, d, dsat.Failure{Message: "broken", Final: true}); err != nil {
		t.Fatal(err)
	}
	if r := e.do("POST", "/v1/tasks/"+id+"/retry", "", ""); r.status != 202 {
		t.Fatalf("retry: %d %s", r.status, r.raw)
	}
	e.satellite(true)
	deadline := time.Now().Add(10 * time.Second)
	for e.do("GET", "/v1/tasks/"+id, "", "").body["status"] != "succeeded" {
		if time.Now().After(deadline) {
			t.Fatal("the retried task did not succeed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return id
}

// TestRetriedTaskFeedGoesOnPastItsOldEnd: the feed of a task that died
// and was retried replays the old DEAD and goes on to the task's current
// final event (issue 13, item 6).
func TestRetriedTaskFeedGoesOnPastItsOldEnd(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		id := e.deadThenRetried(t)
		_, evs, _, cancel := e.stream("/v1/tasks/" + id + "/events")
		defer cancel()
		got := names(collect(t, evs, 5*time.Second))
		if !strings.Contains(got, "DEAD") || !strings.HasSuffix(got, ",HAPPY_END") {
			t.Fatalf("events %s", got)
		}
	})
}

// TestResumeAtOrPastTheEnd: a Last-Event-ID at a finished task's final
// event gets the final state (reset) and the end of the stream; one past
// the task's last event is a 400; neither holds a stream open.
func TestResumeAtOrPastTheEnd(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		e.satellite(true)
		id := e.submit(`{}`)
		_, evs, _, cancel := e.stream("/v1/tasks/" + id + "/events")
		all := collect(t, evs, 10*time.Second)
		cancel()
		final := all[len(all)-1]
		if final.Event != "HAPPY_END" {
			t.Fatalf("events %s", names(all))
		}
		_, evs, _, cancel = e.stream("/v1/tasks/"+id+"/events", "Last-Event-ID", final.ID)
		defer cancel()
		rest := collect(t, evs, 5*time.Second)
		if names(rest) != "reset" || !strings.Contains(rest[0].Data, `"status":"succeeded"`) {
			t.Fatalf("resume at the final event: %s %v", names(rest), rest)
		}
		for _, future := range []string{"99999999999999", fmt.Sprint(len(all) + 1)} {
			r := e.do("GET", "/v1/tasks/"+id+"/events", "", "", "Last-Event-ID", future)
			if r.status != 400 || !strings.Contains(r.raw, "is after the task's last event") {
				t.Fatalf("Last-Event-ID %s: %d %s", future, r.status, r.raw)
			}
		}
		if m := e.do("GET", "/metrics", "", ""); !strings.Contains(m.raw, "dsat_sse_streams 0") {
			t.Fatalf("streams left open:\n%s", grepLines(m.raw, "dsat_sse_streams"))
		}
	})
}
