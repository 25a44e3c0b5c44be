//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// mapYAML: a map of each task's elements, a sleep per element, a join.
const mapYAML = `
name: load
version: 1.0.0
steps:
  split: {handler: echo, map: items, next: [work]}
  work:  {handler: sleep, with: {ms: 15}, timeout: 2s, concurrency: {min: 8, max: 16}, next: [collect]}
  collect: {handler: echo, join: all}
`

// TestMapSatelliteKilled: tasks each mapping 1,000 elements while a
// satellite is SIGKILLed 3 times: every join fires once with the 1,000
// outputs in element order, one END per element, no duplicate state change.
func TestMapSatelliteKilled(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, mapYAML)
	const tasks, n = 4, 1000
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"i":%d}`, i)
	}
	want := "[" + strings.Join(parts, ",") + "]"
	payload := []byte(`{"items":` + want + `}`)
	batch := make([][]byte, tasks)
	for i := range batch {
		batch[i] = payload
	}
	r.worker("steady")
	victim := r.worker("victim-0")
	ids, err := r.c.SubmitBatch(r.ctx, r.p.Name, batch)
	if err != nil {
		t.Fatal(err)
	}
	r.ids = ids
	for i := 1; i <= 3; i++ {
		time.Sleep(700 * time.Millisecond)
		victim.kill()
		victim = r.worker(fmt.Sprintf("victim-%d", i))
	}
	r.waitFinal(120 * time.Second)
	reruns := 0 // elements begun again after their satellite died
	for _, id := range ids {
		st, err := r.c.Get(r.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != dsat.StatusSucceeded {
			t.Fatalf("task %s: %s %s", id, st.Status, st.Error)
		}
		var got []json.RawMessage
		if err := json.Unmarshal(st.Result, &got); err != nil || len(got) != n {
			t.Fatalf("task %s: result of %d elements (%v)", id, len(got), err)
		}
		if string(st.Result) != want {
			t.Fatalf("task %s: outputs out of order", id)
		}
		evs, err := r.c.History(r.ctx, id, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		ends, acks, joins, finals := map[string]int{}, 0, 0, 0
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				t.Fatalf("task %s: event %d has seq %d", id, i, e.Seq)
			}
			switch {
			case e.Event == dsat.EventEnd:
				ends[e.Step]++
			case e.Event == dsat.EventAck && e.Step == "work":
				acks++
			case e.Event == dsat.EventSend && strings.Contains(string(e.Detail), `"items":1000`):
				joins++
			case dsat.FinalEvent(e.Event):
				finals++
			}
		}
		if ends["split"] != 1 || ends["work"] != n || ends["collect"] != 1 || joins != 1 || finals != 1 {
			t.Fatalf("task %s: END %v, join fired %d times, %d final events", id, ends, joins, finals)
		}
		if c := st.Steps["work"].Items; c["done"] != n || len(c) != 1 {
			t.Fatalf("task %s: items %v", id, c)
		}
		reruns += acks - n
	}
	for _, s := range r.p.Order {
		key := r.c.Keys().Step(r.p.Partition(0), s)
		if l := r.rdb.XLen(r.ctx, key).Val(); l != 0 {
			t.Fatalf("stream %s holds %d entries", key, l)
		}
	}
	t.Logf("%d tasks of %d elements, a satellite SIGKILLed 3 times (%d elements begun again): each join fired once with %d outputs in order, one END per element", tasks, n, reruns, n)
}
