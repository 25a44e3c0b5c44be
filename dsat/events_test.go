package dsat_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

func TestParseEntry(t *testing.T) {
	t.Parallel()
	id := dsat.NewTaskID(dsat.Partition{Pipeline: "textstats", API: "1.2"}, time.Now()).String()
	evs, err := dsat.ParseEntry(redis.XMessage{ID: "5-1", Values: map[string]any{"task": id,
		"e": "7|END|2|1764201600123|lang|vm-1|with-a-bar\n8|SEND|2|1764201600123|lang|vm-1|with-a-bar",
		"d": "[]\n" + `{"to":"english"}`}})
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 2 || evs[0].At.UnixMilli() != 1764201600123 {
		t.Fatalf("events %+v", evs)
	}
	evs[0].At, evs[1].At = dsat.Time{}, dsat.Time{}
	eq(t, "first event", evs[0], dsat.Event{ID: "5-1.1", Task: id, Pipeline: "textstats", Seq: 7, Event: "END",
		Step: "lang", Attempt: 2, Worker: "vm-1|with-a-bar", Detail: []byte(`{}`)})
	eq(t, "last event (the entry's id)", evs[1], dsat.Event{ID: "5-1", Task: id, Pipeline: "textstats", Seq: 8,
		Event: "SEND", Step: "lang", Attempt: 2, Worker: "vm-1|with-a-bar", Detail: []byte(`{"to":"english"}`)})

	evs, err = dsat.ParseEntry(redis.XMessage{ID: "5-2", Values: map[string]any{"task": id, "e": "9|HAPPY_END|0|1||", "d": "{}"}})
	if err != nil || len(evs) != 1 || evs[0].ID != "5-2" || evs[0].Step != "" || evs[0].Worker != "" {
		t.Fatalf("task-level event: %+v %v", evs, err)
	}
	for _, bad := range []map[string]any{
		{"task": id, "e": "", "d": ""},
		{"task": id, "e": "7|SEND|2|1|lang", "d": "{}"},
		{"task": id, "e": "x|SEND|2|1|lang|w", "d": "{}"},
		{"task": id, "e": "7|END|2|1|a|w\n8|SEND|2|1|a|w", "d": "{}"},
	} {
		if _, err := dsat.ParseEntry(redis.XMessage{ID: "5-3", Values: bad}); err == nil {
			t.Fatalf("%v parsed", bad)
		}
	}
}

func TestEventIDs(t *testing.T) {
	t.Parallel()
	for id, want := range map[string]bool{"5-1": true, "5-1.1": true, "5-1.12": true, "5-1.0": false, "5-1.": false,
		"5-1.x": false, "5-1.+1": false, "5": false, "$": false, "5-1.1.1": false} {
		eq(t, "ValidEventID("+id+")", dsat.ValidEventID(id), want)
	}
	ordered := []string{"4-9", "5-1.1", "5-1.2", "5-1", "5-2.1", "5-2", "6-0"}
	for i := range ordered {
		for j := range ordered {
			eq(t, ordered[i]+" < "+ordered[j], dsat.EventIDLess(ordered[i], ordered[j]), i < j)
		}
	}
	eq(t, "range after an entry", dsat.RangeStart("5-1"), "5-2")
	eq(t, "range after an event inside an entry", dsat.RangeStart("5-1.1"), "5-1")

	msgs := []redis.XMessage{
		{ID: "5-1", Values: map[string]any{"task": "t", "e": "1|END|1|1|a|w\n2|SEND|1|1|a|w\n3|SEND|1|1|a|w", "d": "{}\n{}\n{}"}},
		{ID: "5-2", Values: map[string]any{"task": "t", "e": "4|ACK|1|1|b|w", "d": "{}"}},
	}
	for after, want := range map[string][]string{"": {"5-1.1", "5-1.2", "5-1", "5-2"}, "5-1.1": {"5-1.2", "5-1", "5-2"},
		"5-1.2": {"5-1", "5-2"}, "5-1": {"5-2"}} {
		evs, err := dsat.EventsAfter(msgs, after)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range evs {
			got = append(got, e.ID)
		}
		eq(t, "events after "+after, got, want)
	}
}

func TestWorkerNameWithLineBreak(t *testing.T) {
	t.Parallel()
	h := newHarness(t, redistest.Backends()[0], linearYAML)
	id := h.submit(`{}`)
	_, errs := h.c.BeginBatch(h.ctx, []dsat.Delivery{{Envelope: dsat.Envelope{Task: id, Step: "a", Token: "1", Attempt: 1}, EntryID: "1-1", Worker: "w\nx"}})
	if errs[0] == nil {
		t.Fatal("a worker name with a line break was accepted")
	}
	_, errs = h.c.BeginBatch(h.ctx, []dsat.Delivery{{Envelope: dsat.Envelope{Task: id, Step: "a", Token: "1", Attempt: 1}, EntryID: "1-1", Worker: "w|x"}})
	if errs[0] == nil {
		t.Fatal("a worker name with a | was accepted")
	}
}

func TestParseEntryFirehose(t *testing.T) {
	t.Parallel()
	a := dsat.NewTaskID(dsat.Partition{Pipeline: "textstats", API: "1.2"}, time.Now()).String()
	b := dsat.NewTaskID(dsat.Partition{Pipeline: "textstats", API: "1.2"}, time.Now()).String()
	evs, err := dsat.ParseEntry(redis.XMessage{ID: "5-1", Values: map[string]any{
		"x": "@" + a + "\n7|END|2|1764201600123|lang|vm-1|[]\n@" + b + "\n3|SEND|1|1764201600124|lang|vm-1|" + `{"to":"a|b"}`}})
	if err != nil || len(evs) != 2 {
		t.Fatalf("%v %v", evs, err)
	}
	evs[0].At, evs[1].At = dsat.Time{}, dsat.Time{}
	eq(t, "first event", evs[0], dsat.Event{ID: "5-1.1", Task: a, Pipeline: "textstats", Seq: 7, Event: "END",
		Step: "lang", Attempt: 2, Worker: "vm-1", Detail: []byte(`{}`)})
	eq(t, "last event (the entry's id)", evs[1], dsat.Event{ID: "5-1", Task: b, Pipeline: "textstats", Seq: 3,
		Event: "SEND", Step: "lang", Attempt: 1, Worker: "vm-1", Detail: []byte(`{"to":"a|b"}`)})
	for _, bad := range []string{"@" + a + "\n7|END|2|1|lang", "7|END|2|1|lang|w|{}"} {
		if _, err := dsat.ParseEntry(redis.XMessage{ID: "5-2", Values: map[string]any{"x": bad}}); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

// TestParseEntryPipelineLevel: a line "!<pipeline>" starts pipeline-level
// events (BREAKER): no task, seq 0; a bad pipeline name does not parse.
func TestParseEntryPipelineLevel(t *testing.T) {
	t.Parallel()
	evs, err := dsat.ParseEntry(redis.XMessage{ID: "6-0", Values: map[string]any{
		"x": "!textstats\n0|BREAKER|0|1764201600123|lang|vm-1|" + `{"state":"open","until":"2025-11-27T00:00:30.123Z"}`}})
	if err != nil || len(evs) != 1 {
		t.Fatalf("%v %v", evs, err)
	}
	evs[0].At = dsat.Time{}
	eq(t, "BREAKER", evs[0], dsat.Event{ID: "6-0", Pipeline: "textstats", Event: dsat.EventBreaker, Step: "lang", Worker: "vm-1",
		Detail: []byte(`{"state":"open","until":"2025-11-27T00:00:30.123Z"}`)})
	for _, bad := range []string{"!Bad Name\n0|BREAKER|0|1|a|w|{}", "!\n0|BREAKER|0|1|a|w|{}"} {
		if _, err := dsat.ParseEntry(redis.XMessage{ID: "6-1", Values: map[string]any{"x": bad}}); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}

func TestParseLog(t *testing.T) {
	t.Parallel()
	id := dsat.NewTaskID(dsat.Partition{Pipeline: "p", API: "1.0"}, time.Now()).String()
	evs, err := dsat.ParseLog(id, "1|INIT|0|5|||{\"entry\":\"a\"}\n2|ACK|1|6|a|w|{}\n")
	if err != nil || len(evs) != 2 || evs[1].ID != "2" || evs[1].Step != "a" || evs[1].Pipeline != "p" || string(evs[0].Detail) != `{"entry":"a"}` {
		t.Fatalf("%+v %v", evs, err)
	}
	if evs, err := dsat.ParseLog(id, ""); err != nil || len(evs) != 0 {
		t.Fatalf("empty log: %v %v", evs, err)
	}
	if _, err := dsat.ParseLog(id, "1|INIT\n"); err == nil {
		t.Fatal("a malformed log parsed")
	}
}
