package dsat_test

import (
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// schedEnv is one schedule contract case: the engine harness (a Redis,
// a fake clock) with a pipeline "p" of 3 partitions, and more clients
// ("processes") on the same Redis and clock.
type schedEnv struct {
	*harness
}

func newSchedEnv(t *testing.T, b redistest.Backend) *schedEnv {
	t.Helper()
	h := newHarness(t, b, "name: p\nversion: 1.0.0\npartitions: 3\nsteps:\n  a: {handler: echo}\n")
	h.now = time.Date(2026, 1, 2, 10, 0, 0, 200e6, time.UTC)
	return &schedEnv{h}
}

func (e *schedEnv) client(ps ...*dsat.Pipeline) *dsat.Client {
	c, err := dsat.NewClient(e.rdb, dsat.Config{Now: e.clock}, ps...)
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *schedEnv) put(s dsat.ScheduleSpec) (dsat.ScheduleInfo, bool) {
	e.t.Helper()
	info, created, err := e.c.PutSchedule(e.ctx, s)
	if err != nil {
		e.t.Fatalf("put %s: %v", s.ID, err)
	}
	return info, created
}

// fire runs FireSchedules in n processes at once.
func (e *schedEnv) fire(n int) []dsat.ScheduleFiring {
	e.t.Helper()
	var mu sync.Mutex
	var all []dsat.ScheduleFiring
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		c := e.c
		if i > 0 {
			c = e.client(e.p)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			fs, err := c.FireSchedules(e.ctx)
			if err != nil {
				e.t.Errorf("fire: %v", err)
			}
			mu.Lock()
			all = append(all, fs...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	return all
}

// tasks counts the tasks of pipeline p (their state hashes).
func (e *schedEnv) tasks() int {
	e.t.Helper()
	keys, err := e.rdb.Keys(e.ctx, "dsat:{p@1.0#*}:t:*").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if !strings.HasSuffix(k, ":log") && !strings.HasSuffix(k, ":res") {
			n++
		}
	}
	return n
}

// slotTask is the task of a slot ("" when none).
func (e *schedEnv) slotTask(id string, slot time.Time) string {
	e.t.Helper()
	task, err := e.c.SlotTask(e.ctx, "p", id, slot)
	if errors.Is(err, dsat.ErrTaskNotFound) {
		return ""
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return task
}

func at(s string) time.Time { t, _ := time.Parse(time.RFC3339Nano, "2026-01-02T"+s+"Z"); return t }

func TestScheduleStore(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newSchedEnv(t, b)
		info, created := e.put(dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "2s", Payload: json.RawMessage(`{"n": 1}`)})
		if !created || !info.NextRunAt.Equal(at("10:00:02")) || string(info.Payload) != `{"n":1}` || info.Catchup != "one" || !info.LastRunAt.IsZero() {
			t.Fatalf("created %v: %+v", created, info)
		}
		e.advance(500 * time.Millisecond)
		if info, created := e.put(dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "2s", Payload: json.RawMessage(`{"n":1}`)}); created || !info.UpdatedAt.Equal(at("10:00:00.200")) {
			t.Fatalf("same definition again: created %v, updated %s", created, info.UpdatedAt)
		}
		if info, _ := e.put(dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "2s", Payload: json.RawMessage(`{"n":2}`)}); !info.NextRunAt.Equal(at("10:00:02")) {
			t.Fatalf("a new payload moved the next slot: %s", info.NextRunAt)
		}
		if info, _ := e.put(dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "5s"}); !info.NextRunAt.Equal(at("10:00:05")) || string(info.Payload) != "{}" {
			t.Fatalf("a new interval: %+v", info)
		}
		e.put(dsat.ScheduleSpec{ID: "nightly", Pipeline: "p", Cron: "0 3 * * *", Timezone: "Europe/Paris", Catchup: "all"})
		list, err := e.c.Schedules(e.ctx)
		if err != nil || len(list) != 2 || list[0].ID != "nightly" || list[1].ID != "tick" || !list[0].NextRunAt.Equal(at("02:00:00").Add(24*time.Hour)) {
			t.Fatalf("list: %v %+v", err, list)
		}
		// Pause, then resume later: no catch-up of the paused time.
		if info, err := e.c.PauseSchedule(e.ctx, "tick", true); err != nil || !info.Paused || !info.NextRunAt.IsZero() {
			t.Fatalf("pause: %v %+v", err, info)
		}
		e.advance(time.Minute)
		if fs := e.fire(1); len(fs) != 0 {
			t.Fatalf("a paused schedule fired: %+v", fs)
		}
		if info, err := e.c.PauseSchedule(e.ctx, "tick", false); err != nil || info.Paused || !info.NextRunAt.Equal(at("10:01:05")) {
			t.Fatalf("resume: %v %+v", err, info)
		}
		if err := e.c.DeleteSchedule(e.ctx, "tick"); err != nil {
			t.Fatal(err)
		}
		for _, err := range []error{e.c.DeleteSchedule(e.ctx, "tick"), errOf(e.c.GetSchedule(e.ctx, "tick")), errOf(e.c.PauseSchedule(e.ctx, "tick", true))} {
			if !errors.Is(err, dsat.ErrScheduleNotFound) {
				t.Fatalf("after delete: %v", err)
			}
		}
		if _, _, err := e.c.PutSchedule(e.ctx, dsat.ScheduleSpec{ID: "x", Pipeline: "ghost", Every: "1s"}); !errors.Is(err, dsat.ErrPipelineNotFound) {
			t.Fatalf("unknown pipeline: %v", err)
		}
		if _, err := e.c.GetSchedule(e.ctx, "{x}"); !errors.Is(err, dsat.ErrInvalidSchedule) {
			t.Fatalf("bad id: %v", err)
		}
		if _, _, err := e.c.PutSchedule(e.ctx, dsat.ScheduleSpec{ID: "x", Pipeline: "p", Every: "1s", Catchup: "most"}); !errors.Is(err, dsat.ErrInvalidSchedule) ||
			!strings.Contains(err.Error(), `field "catchup"`) {
			t.Fatalf("bad catchup: %v", err)
		}
		for i := len(list) - 1; i < dsat.MaxSchedules; i++ {
			e.put(dsat.ScheduleSpec{ID: "s" + strconv.Itoa(i), Pipeline: "p", Every: "1h"})
		}
		if _, _, err := e.c.PutSchedule(e.ctx, dsat.ScheduleSpec{ID: "one-more", Pipeline: "p", Every: "1h"}); !errors.Is(err, dsat.ErrTooManySchedules) {
			t.Fatalf("past the limit: %v", err)
		}
	})
}

func errOf[T any](_ T, err error) error { return err }

// TestScheduleOneTaskPerSlot: eight processes fire a schedule of every 1s
// at once, at each of 30 slots: each slot has one task, and there are 30.
func TestScheduleOneTaskPerSlot(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newSchedEnv(t, b)
		e.put(dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "1s", Catchup: "all"})
		fired := 0
		for i := 0; i < 30; i++ {
			e.advance(time.Second)
			for _, f := range e.fire(8) {
				if f.Err != nil {
					t.Fatal(f.Err)
				}
				fired += len(f.Tasks)
			}
		}
		seen := map[string]bool{}
		for i := 1; i <= 30; i++ {
			task := e.slotTask("tick", at("10:00:00").Add(time.Duration(i)*time.Second))
			if task == "" || seen[task] {
				t.Fatalf("slot %d: task %q (seen before: %v)", i, task, seen[task])
			}
			seen[task] = true
		}
		if n := e.tasks(); n != 30 || fired != 30 {
			t.Fatalf("%d tasks, %d firings reported, want 30", n, fired)
		}
		info, _ := e.c.GetSchedule(e.ctx, "tick")
		if !info.LastSlot.Equal(at("10:00:30")) || info.LastTask != e.slotTask("tick", at("10:00:30")) || !info.NextRunAt.Equal(at("10:00:31")) {
			t.Fatalf("state %+v", info)
		}
	})
}

// TestScheduleTakeover: a process claims a slot and dies before (or after)
// submitting; after the lease another process fires the slot, and the slot
// still has one task.
func TestScheduleTakeover(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newSchedEnv(t, b)
		e.put(dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "1s"})
		e.advance(time.Second) // slot 10:00:01 is due
		slots, err := dsat.ClaimOnlyForTest(e.ctx, e.c, "tick")
		if err != nil || len(slots) != 1 || !slots[0].Equal(at("10:00:01")) {
			t.Fatalf("claim: %v %v", slots, err)
		}
		if fs := e.fire(3); len(fs) != 0 || e.tasks() != 0 {
			t.Fatalf("fired during the claim's lease: %+v", fs)
		}
		// The dead process had submitted the slot's task after all.
		s, err := e.c.Submit(e.ctx, "p", []byte("{}"), dsat.SubmitOptions{IdempotencyKey: dsat.SlotKey("tick", slots[0])})
		if err != nil {
			t.Fatal(err)
		}
		e.advance(dsat.ScheduleLease) // lease over; slots up to 10:00:06 due
		fs := e.fire(3)
		if len(fs) != 1 || len(fs[0].Slots) != 2 || !fs[0].Slots[0].Equal(at("10:00:01")) || fs[0].Tasks[0] != s.ID || fs[0].Skipped != 4 {
			t.Fatalf("takeover: %+v", fs)
		}
		if n := e.tasks(); n != 2 {
			t.Fatalf("%d tasks, want 2 (the taken-over slot and the latest)", n)
		}
	})
}

// TestScheduleStaleProcess: a process that read the schedule, stalled while
// others fired the slot and the slot's idempotency key expired, changes
// nothing when it resumes: its claim fails.
func TestScheduleStaleProcess(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newSchedEnv(t, b)
		e.put(dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "1s"})
		e.advance(time.Second)
		ok, err := dsat.FireStaleForTest(e.ctx, e.client(e.p), "tick", func() {
			if fs := e.fire(1); len(fs) != 1 {
				t.Fatalf("fire: %+v", fs)
			}
			key := dsat.SlotKey("tick", at("10:00:01"))
			for n := 0; n < 3; n++ { // the key's TTL ran out
				e.rdb.Del(e.ctx, e.c.Keys().Idempotency(e.p.Partition(n), key))
			}
		})
		if err != nil || ok || e.tasks() != 1 {
			t.Fatalf("the stale process fired: ok %v, %v, %d tasks", ok, err, e.tasks())
		}
	})
}

// TestScheduleCatchupAfterOutage: nothing fired for 5 slots; the next
// firing submits by policy.
func TestScheduleCatchupAfterOutage(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newSchedEnv(t, b)
		for _, p := range []string{"none", "one", "all"} {
			e.put(dsat.ScheduleSpec{ID: p, Pipeline: "p", Every: "1s", Catchup: p})
		}
		e.advance(5 * time.Second)
		got := map[string]int{}
		for _, f := range e.fire(2) {
			got[f.Schedule] = len(f.Tasks)
		}
		if got["none"] != 1 || got["one"] != 1 || got["all"] != 5 || e.tasks() != 7 {
			t.Fatalf("fired %v, %d tasks", got, e.tasks())
		}
		for p, skipped := range map[string]int64{"none": 4, "one": 4, "all": 0} {
			if info, _ := e.c.GetSchedule(e.ctx, p); info.Skipped != skipped || !info.LastSlot.Equal(at("10:00:05")) {
				t.Errorf("%s: %+v", p, info)
			}
		}
	})
}

// TestScheduleOfAnUnloadedPipeline: a process that has not loaded the
// schedule's pipeline, or has loaded it only draining (from its record:
// Submit refuses it), leaves it to one that has.
func TestScheduleOfAnUnloadedPipeline(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		e := newSchedEnv(t, b)
		e.put(dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "1s", Jitter: "900ms"})
		info, _ := e.c.GetSchedule(e.ctx, "tick")
		if d := info.NextRunAt.Sub(at("10:00:01")); d < 0 || d >= 900*time.Millisecond {
			t.Fatalf("next run %s: jitter %s", info.NextRunAt, d)
		}
		e.advance(2 * time.Second)
		other, _ := dsat.ParsePipeline("o.yaml", []byte("name: other\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n"))
		fs, err := e.client(other).FireSchedules(e.ctx)
		if len(fs) != 0 || err != nil {
			t.Fatalf("fired by a process without the pipeline: %+v %v", fs, err)
		}
		draining, _ := dsat.ParsePipeline("p.yaml", []byte("name: p\nversion: 1.0.0\npartitions: 3\nsteps:\n  a: {handler: echo}\n"))
		draining.Draining = true
		fs, err = e.client(draining).FireSchedules(e.ctx)
		if len(fs) != 0 || err != nil {
			t.Fatalf("fired by a process with the pipeline only draining: %+v %v", fs, err)
		}
		if info, _ := e.c.GetSchedule(e.ctx, "tick"); info.LastError != "" || info.LastTask != "" {
			t.Fatalf("a firing recorded by a process with the pipeline only draining: %+v", info)
		}
		if fs := e.fire(1); len(fs) != 1 || len(fs[0].Tasks) != 1 {
			t.Fatalf("not fired by the right process: %+v", fs)
		}
	})
}
