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
partitions: %d
steps:
  split: {handler: echo, map: items, next: [work]}
  work:  {handler: sleep, with: {ms: 15}, timeout: 2s, concurrency: {min: 8, max: 16}, next: [collect]}
  collect: {handler: echo, join: all}
`

// submitMaps submits tasks each mapping n elements {"i": 0..n-1} and
// returns the join's expected input.
func (r *rig) submitMaps(tasks, n int) string {
	r.t.Helper()
	parts := make([]string, n)
	for i := range parts {
		parts[i] = fmt.Sprintf(`{"i":%d}`, i)
	}
	want := "[" + strings.Join(parts, ",") + "]"
	batch := make([][]byte, tasks)
	for i := range batch {
		batch[i] = []byte(`{"items":` + want + `}`)
	}
	ids, err := r.c.SubmitBatch(r.ctx, r.p.Name, batch)
	if err != nil {
		r.t.Fatal(err)
	}
	r.ids = append(r.ids, ids...)
	return want
}

// checkMaps checks every task of the rig after submitMaps: it succeeded,
// its join fired once with the n outputs in element order (want), one END
// per element, events numbered without gap, step streams empty.
func (r *rig) checkMaps(n int, want string) {
	t := r.t
	t.Helper()
	for _, id := range r.ids {
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
		ends, joins, finals := map[string]int{}, 0, 0
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				t.Fatalf("task %s: event %d has seq %d", id, i, e.Seq)
			}
			switch {
			case e.Event == dsat.EventEnd:
				ends[e.Step]++
			case e.Event == dsat.EventSend && strings.Contains(string(e.Detail), fmt.Sprintf(`"items":%d`, n)):
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
	}
	for p := 0; p < r.p.Partitions; p++ {
		for _, s := range r.p.Order {
			key := r.c.Keys().Step(r.p.Partition(p), s)
			if l := r.rdb.XLen(r.ctx, key).Val(); l != 0 {
				t.Fatalf("stream %s holds %d entries", key, l)
			}
		}
	}
}

// TestMapSatelliteKilled: tasks each mapping 1,000 elements while a
// satellite is SIGKILLed 3 times: every join fires once with the 1,000
// outputs in element order, one END per element, no duplicate state change.
func TestMapSatelliteKilled(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, fmt.Sprintf(mapYAML, 1))
	const tasks, n = 4, 1000
	r.worker("steady")
	victim := r.worker("victim-0")
	want := r.submitMaps(tasks, n)
	held := 0 // elements the killed satellites had read and not finished
	for i := 1; i <= 3; i++ {
		time.Sleep(700 * time.Millisecond)
		victim.kill()
		if pi, err := r.rdb.XPending(r.ctx, r.c.Keys().Step(r.p.Partition(0), "work"), "work").Result(); err == nil {
			held += int(pi.Consumers[fmt.Sprintf("victim-%d", i-1)])
		}
		victim = r.worker(fmt.Sprintf("victim-%d", i))
	}
	if held == 0 {
		t.Fatal("the killed satellites held no element: the test proves nothing")
	}
	r.waitFinal(120 * time.Second)
	r.checkMaps(n, want)
	t.Logf("%d tasks of %d elements, a satellite SIGKILLed 3 times holding %d elements: each join fired once with %d outputs in order, one END per element", tasks, n, held, n)
}

// TestMapOnCluster: maps over 6 partitions of the 3-master cluster: each
// script call's keys share the task's hash tag (no CROSSSLOT), every join
// fires once with its outputs in order.
func TestMapOnCluster(t *testing.T) {
	fullSuite(t)
	cl := startCluster(t)
	rc := cl.client(t)
	r := newRig(t, rc, cl.url(), fmt.Sprintf(mapYAML, 6))
	masters := map[string]bool{}
	for n := 0; n < 6; n++ {
		m, err := masterOf(r.ctx, rc, r.c.Keys().Firehose(r.p.Partition(n)))
		if err != nil {
			t.Fatal(err)
		}
		masters[m] = true
	}
	r.worker("w1")
	r.worker("w2")
	const tasks, n = 12, 200
	want := r.submitMaps(tasks, n)
	r.waitFinal(120 * time.Second)
	r.checkMaps(n, want)
	t.Logf("%d tasks of %d elements over 6 partitions on %d masters: each join fired once with its outputs in order", tasks, n, len(masters))
}
