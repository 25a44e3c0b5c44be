package dsat_test

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestPriorityFollowsTask (issue 16): a high task's tokens wait in the
// high streams of every step it reaches, also after a retry (promote), a
// delay and a re-drive (Retry); a low task's in the low ones; the state
// shows the priority. A normal task writes nothing of it: no field, no
// high or low stream, no mark.
func TestPriorityFollowsTask(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		seen := map[string][]dsat.Priority{} // step -> levels of its deliveries
		failB := 1                           // b fails this many more times
		record := func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			seen[d.Step] = append(seen[d.Step], d.Priority)
			if d.Step == "b" && failB > 0 {
				failB--
				return nil, "", &dsat.Failure{Message: "flaky"}
			}
			return echo(d)
		}
		handlers := map[string]handlerFunc{"a": record, "b": record, "c": record}

		// Normal: nothing of priorities anywhere.
		id := h.submit(`{}`)
		h.drain(handlers)
		part := mustID(t, id).Partition
		eq(t, "normal status", h.state(id).Status, dsat.StatusSucceeded)
		eq(t, "normal priority", h.state(id).Priority, dsat.PriorityNormal)
		eq(t, "normal: no pr field", h.rdb.HExists(h.ctx, h.c.Keys().Task(part, id), "pr").Val(), false)
		for _, s := range h.p.Order {
			for _, level := range []dsat.Priority{dsat.PriorityHigh, dsat.PriorityLow} {
				eq(t, "normal: no stream "+s+" "+level.String(), h.rdb.Exists(h.ctx, h.c.Keys().StepAt(part, s, level)).Val(), 0)
			}
			eq(t, "normal deliveries of "+s, seen[s], []dsat.Priority{dsat.PriorityNormal, dsat.PriorityNormal}[:len(seen[s])])
		}
		eq(t, "normal: no mark", h.rdb.Exists(h.ctx, h.c.Keys().Priorities()).Val(), 0)
		eq(t, "uses priorities", h.c.PrioritiesUsed(h.p.Name), false)

		// High, delayed, with a retry on b.
		seen = map[string][]dsat.Priority{}
		failB = 1
		s, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), dsat.SubmitOptions{Priority: dsat.PriorityHigh, RunAt: h.clock().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "marked", h.rdb.HExists(h.ctx, h.c.Keys().Priorities(), h.p.Name).Val(), true)
		eq(t, "uses priorities", h.c.PrioritiesUsed(h.p.Name), true)
		h.drain(handlers)
		st := h.state(s.ID)
		eq(t, "high status", st.Status, dsat.StatusSucceeded)
		eq(t, "high priority", st.Priority, dsat.PriorityHigh)
		eq(t, "high deliveries", seen, map[string][]dsat.Priority{
			"a": {dsat.PriorityHigh}, "b": {dsat.PriorityHigh, dsat.PriorityHigh}, "c": {dsat.PriorityHigh}})
		h.checkInvariants(s.ID)

		// Low, b fails until its attempts are used; Retry re-drives it
		// into b's low stream.
		seen = map[string][]dsat.Priority{}
		failB = 1000
		ids, err := h.c.SubmitBatch(h.ctx, h.p.Name, [][]byte{[]byte(`{}`)}, dsat.SubmitOptions{Priority: dsat.PriorityLow})
		if err != nil {
			t.Fatal(err)
		}
		h.drain(handlers)
		eq(t, "low status", h.state(ids[0]).Status, dsat.StatusFailed)
		failB = 0
		if n, err := h.c.Retry(h.ctx, ids[0]); err != nil || n != 1 {
			t.Fatalf("retry: %d %v", n, err)
		}
		lpart := mustID(t, ids[0]).Partition
		eq(t, "re-driven into b's low stream", h.rdb.XLen(h.ctx, h.c.Keys().StepAt(lpart, "b", dsat.PriorityLow)).Val(), 1)
		eq(t, "not into b's normal stream", h.rdb.XLen(h.ctx, h.c.Keys().Step(lpart, "b")).Val(), 0)
		h.drain(handlers)
		st = h.state(ids[0])
		eq(t, "low status after retry", st.Status, dsat.StatusSucceeded)
		eq(t, "low priority", st.Priority, dsat.PriorityLow)
		for step, levels := range seen {
			for _, level := range levels {
				eq(t, "low delivery of "+step, level, dsat.PriorityLow)
			}
		}
		h.checkInvariants(ids[0])
		h.streamsEmpty()

		if _, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), dsat.SubmitOptions{Priority: 7}); !errors.Is(err, dsat.ErrInvalidPriority) {
			t.Fatalf("priority 7: %v, want ErrInvalidPriority", err)
		}
	})
}

// priorityReader submits low, normal and high tasks to step a of a
// one-partition pipeline and returns a reader of it by priority.
func priorityReader(t *testing.T, h *harness, low, normal, high int) *dsat.StepReader {
	t.Helper()
	r := h.c.NewStepReader(h.p, "a", "c1")
	if err := r.EnsureGroups(h.ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.EnablePriorities(h.ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.EnablePriorities(h.ctx); err != nil { // twice is harmless
		t.Fatal(err)
	}
	eq(t, "streams", r.Streams(), 3*h.p.Partitions)
	submitN(t, h, dsat.PriorityLow, low)
	submitN(t, h, dsat.PriorityNormal, normal)
	submitN(t, h, dsat.PriorityHigh, high)
	return r
}

func submitN(t *testing.T, h *harness, level dsat.Priority, n int) {
	t.Helper()
	if n == 0 {
		return
	}
	payloads := make([][]byte, n)
	for i := range payloads {
		payloads[i] = []byte(`{}`)
	}
	if _, err := h.c.SubmitBatch(h.ctx, h.p.Name, payloads, dsat.SubmitOptions{Priority: level}); err != nil {
		t.Fatal(err)
	}
}

// readLevels reads n times count tokens and counts them by level.
func readLevels(t *testing.T, h *harness, r *dsat.StepReader, n, count int) map[dsat.Priority]int {
	t.Helper()
	got := map[dsat.Priority]int{}
	for i := 0; i < n; i++ {
		es, err := r.ReadNew(h.ctx, count, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			env, err := dsat.ParseEnvelope(e.Values, 0)
			if err != nil || env.Priority != e.Priority {
				t.Fatalf("entry of stream %s: %+v %v", e.Priority, env, err)
			}
			got[e.Priority]++
		}
	}
	return got
}

// TestPriorityReadOrder (issue 16): with 100 low tokens waiting, then 10
// high, the first read of 10 takes the 10 high ones; a level without
// tokens gives its turn to the others.
func TestPriorityReadOrder(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, partitionedYAML)
		r := priorityReader(t, h, 100, 0, 10)
		eq(t, "first read", readLevels(t, h, r, 1, 10), map[dsat.Priority]int{dsat.PriorityHigh: 10})
		eq(t, "then the low ones", readLevels(t, h, r, 10, 10), map[dsat.Priority]int{dsat.PriorityLow: 100})
		eq(t, "then nothing", readLevels(t, h, r, 1, 10), map[dsat.Priority]int{})
	})
}

// TestPriorityShares (issue 16): while every level has tokens waiting,
// reads of one token take high, normal and low 6:3:1; with a steady
// stream of high tokens and no normal ones, low still gets 1 read in 10.
func TestPriorityShares(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, onePartYAML)
		r := priorityReader(t, h, 50, 50, 100)
		eq(t, "shares", readLevels(t, h, r, 100, 1), map[dsat.Priority]int{
			dsat.PriorityHigh: 60, dsat.PriorityNormal: 30, dsat.PriorityLow: 10})

		h2 := newHarness(t, b, onePartYAML)
		r2 := priorityReader(t, h2, 100, 0, 0)
		got := map[dsat.Priority]int{}
		for i := 0; i < 100; i++ {
			submitN(t, h2, dsat.PriorityHigh, 1) // a steady stream of high tokens
			for level, n := range readLevels(t, h2, r2, 1, 1) {
				got[level] += n
			}
		}
		eq(t, "low under a steady stream of high", got, map[dsat.Priority]int{dsat.PriorityHigh: 90, dsat.PriorityLow: 10})
	})
}

// TestPriorityBlockingReadOrder (issue 16): tokens of every level that
// arrive while a reader by priority goes to block (it found every level
// empty) come back from that one read highest first, so a reader with
// fewer slots runs the high one and keeps the others.
func TestPriorityBlockingReadOrder(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, onePartYAML)
		r := priorityReader(t, h, 0, 0, 0)
		dsat.BeforeBlockForTest(r, func() {
			submitN(t, h, dsat.PriorityLow, 1)
			submitN(t, h, dsat.PriorityNormal, 1)
			submitN(t, h, dsat.PriorityHigh, 1)
		})
		es, err := r.ReadNew(h.ctx, 1, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var got []dsat.Priority
		for _, e := range es {
			got = append(got, e.Priority)
		}
		eq(t, "levels of the blocking read", got, []dsat.Priority{dsat.PriorityHigh, dsat.PriorityNormal, dsat.PriorityLow})
	})
}

// partitionedYAML: one step, four partitions.
const partitionedYAML = `
name: prio
version: 1.0.0
partitions: 4
steps:
  a: {handler: echo}
`

// onePartYAML: one step, one partition (exact shares per read).
const onePartYAML = `
name: prio1
version: 1.0.0
partitions: 1
steps:
  a: {handler: echo}
`

// TestPriorityThroughMapAndJoin (issue 16, 17): a low task's map items, a
// failed item (join settled) and the join token all wait in the low
// streams.
func TestPriorityThroughMapAndJoin(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(mapYAML, "settled"))
		s, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{"items":[1,2,3]}`), dsat.SubmitOptions{Priority: dsat.PriorityLow})
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		check := func(f handlerFunc) handlerFunc {
			return func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
				n++
				if d.Priority != dsat.PriorityLow {
					t.Fatalf("%s token of a low task read as %s", d.Step, d.Priority)
				}
				return f(d)
			}
		}
		h.drain(map[string]handlerFunc{"split": check(pass), "work": check(failOn("2")), "collect": check(pass)})
		eq(t, "status", h.state(s.ID).Status, dsat.StatusSucceeded)
		eq(t, "tokens run", n, 5)
		h.checkInvariants(s.ID)
		h.streamsEmpty()
	})
}

// TestPriorityOnFailure (issue 16, 17): a high task's failure handler
// token waits in the handler's high stream.
func TestPriorityOnFailure(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, onFailureYAML)
		s, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), dsat.SubmitOptions{Priority: dsat.PriorityHigh})
		if err != nil {
			t.Fatal(err)
		}
		var levels []dsat.Priority
		h.drain(map[string]handlerFunc{"b": failB, "alert": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			levels = append(levels, d.Priority)
			return echo(d)
		}})
		eq(t, "alert runs", levels, []dsat.Priority{dsat.PriorityHigh})
		eq(t, "status", h.state(s.ID).Status, dsat.StatusFailed)
		h.streamsEmpty()
	})
}
