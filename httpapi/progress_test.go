package httpapi

import (
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestProgressInStateAndFeed: a progress report shows in GET
// /v1/tasks/{id} as steps.<name>.progress (checked against openapi.json
// like every response) and reaches an open task feed as PROGRESS.
func TestProgressInStateAndFeed(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newEnv(t, b)
		id := e.submit(`{"x":1}`)
		_, evs, _, cancel := e.stream("/v1/tasks/" + id + "/events")
		defer cancel()
		tid, _ := dsat.ParseTaskID(id)
		stream := e.c.Keys().Step(tid.Partition, "a")
		if err := e.rdb.XGroupCreateMkStream(t.Context(), stream, "a", "0").Err(); err != nil && !strings.Contains(err.Error(), "BUSYGROUP") {
			t.Fatal(err)
		}
		res, err := e.rdb.XReadGroup(t.Context(), &redis.XReadGroupArgs{Group: "a", Consumer: "w1",
			Streams: []string{stream, ">"}, Count: 1, Block: -1}).Result()
		if err != nil {
			t.Fatal(err)
		}
		m := res[0].Messages[0]
		env, err := dsat.ParseEnvelope(m.Values, 0)
		if err != nil {
			t.Fatal(err)
		}
		d := dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: "w1", Started: time.Now()}
		sent := time.Now()
		if o, err := e.c.Progress(t.Context(), d, 0.4, "11/54 pages"); o != dsat.Applied || err != nil {
			t.Fatalf("progress: %v %v", o, err)
		}
		var got []string
		timer := time.NewTimer(5 * time.Second)
		defer timer.Stop()
		for len(got) < 3 {
			select {
			case ev := <-evs:
				got = append(got, ev.Event)
				if ev.Event == dsat.EventProgress {
					if !strings.Contains(ev.Data, `"detail":{"progress":0.4,"message":"11/54 pages"}`) {
						t.Fatalf("PROGRESS data %s", ev.Data)
					}
					if waited := time.Since(sent); waited > time.Second {
						t.Errorf("PROGRESS reached the feed after %v", waited)
					}
				}
			case <-timer.C:
				t.Fatalf("feed: %v", got)
			}
		}
		if strings.Join(got, ",") != "INIT,ACK,PROGRESS" {
			t.Fatalf("feed: %v", got)
		}
		g := e.do("GET", "/v1/tasks/"+id, "", "")
		p, _ := g.body["steps"].(map[string]any)["a"].(map[string]any)["progress"].(map[string]any)
		if g.status != 200 || p["value"] != 0.4 || p["message"] != "11/54 pages" || p["at"] == nil {
			t.Fatalf("state %d %s", g.status, g.raw)
		}
	})
}
