package dsat_test

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
)

func TestParseEvent(t *testing.T) {
	id := dsat.NewTaskID(dsat.Partition{Pipeline: "textstats", API: "1.2"}, time.Now()).String()
	e, err := dsat.ParseEvent(redis.XMessage{ID: "5-1", Values: map[string]any{
		"task": id, "e": "7|SEND|2|1764201600123|lang|vm-1|with-a-bar", "d": `{"to":"english"}`}})
	if err != nil {
		t.Fatal(err)
	}
	want := dsat.Event{ID: "5-1", Task: id, Pipeline: "textstats", Seq: 7, Event: "SEND", Step: "lang", Attempt: 2,
		Worker: "vm-1|with-a-bar", Detail: []byte(`{"to":"english"}`)}
	if e.At.UnixMilli() != 1764201600123 {
		t.Fatalf("at %v", e.At)
	}
	e.At = dsat.Time{}
	eq(t, "event", e, want)

	e, err = dsat.ParseEvent(redis.XMessage{ID: "5-2", Values: map[string]any{"task": id, "e": "8|HAPPY_END|0|1||", "d": "[]"}})
	if err != nil || e.Step != "" || e.Worker != "" || string(e.Detail) != "{}" {
		t.Fatalf("task-level event: %+v %v", e, err)
	}
	for _, bad := range []string{"", "7|SEND|2|1|lang", "x|SEND|2|1|lang|w"} {
		if _, err := dsat.ParseEvent(redis.XMessage{ID: "5-3", Values: map[string]any{"task": id, "e": bad}}); err == nil {
			t.Fatalf("%q parsed", bad)
		}
	}
}
