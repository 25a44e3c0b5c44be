//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// scheduleYAML is a pipeline with a schedule of every 1s that catches up
// every missed slot, so any gap would show.
func scheduleYAML(partitions int) string {
	return fmt.Sprintf(`
name: sched
version: 1.0.0
partitions: %d
schedules:
  tick: {every: 1s, catchup: all, payload: {from: schedule}}
steps:
  a: {handler: echo}
`, partitions)
}

// chaosFor is how long the processes are killed and restarted: 60 s, or
// DSAT_SCHEDULE_CHAOS (a Go duration) for a quicker local run.
func chaosFor(t *testing.T) time.Duration {
	d := 60 * time.Second
	if v := os.Getenv("DSAT_SCHEDULE_CHAOS"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("DSAT_SCHEDULE_CHAOS=%q: %v", v, err)
		}
	}
	return d
}

// TestScheduleUnderCrashes (issue 15): 2 serve and 3 worker processes all
// fire a schedule of every 1s while one of them is SIGKILLed and restarted
// every 3 s, for 60 s: every slot from the first to the last has exactly
// one task, none is missed, and every task runs to its end.
func TestScheduleUnderCrashes(t *testing.T) {
	fullSuite(t)
	srv := redistest.Start(t)
	scheduleChaos(t, srv.Client(t), "redis://"+srv.Addr, 1)
}

// TestScheduleUnderCrashesCluster: the same on the 3-master cluster, with
// the tasks spread over 6 partitions (the schedule's keys share the hash
// tag {sched}, one slot).
func TestScheduleUnderCrashesCluster(t *testing.T) {
	fullSuite(t)
	cl := startCluster(t)
	scheduleChaos(t, cl.client(t), cl.url(), 6)
}

func scheduleChaos(t *testing.T, rdb redis.UniversalClient, redisURL string, partitions int) {
	r := newRig(t, rdb, redisURL, scheduleYAML(partitions))
	procs := []func() *dsatProc{
		func() *dsatProc { p, _ := r.serve(); return p },
		func() *dsatProc { p, _ := r.serve(); return p },
		func() *dsatProc { return r.worker("w1") },
		func() *dsatProc { return r.worker("w2") },
		func() *dsatProc { return r.worker("w3") },
	}
	running := make([]*dsatProc, len(procs))
	for i, start := range procs {
		running[i] = start()
	}
	info := waitSchedule(t, r, func(s dsat.ScheduleInfo) bool { return !s.LastRunAt.IsZero() }, 20*time.Second)
	first := info.CreatedAt.Truncate(time.Second).Add(time.Second)
	chaos := chaosFor(t)
	end := time.Now().Add(chaos)
	kills := 0
	for i := 0; time.Now().Before(end); i++ {
		time.Sleep(3 * time.Second)
		n := i % len(procs)
		running[n].kill()
		kills++
		time.Sleep(300 * time.Millisecond)
		running[n] = procs[n]()
	}
	chaosEnd := time.Now()
	// Let a claim whose holder was killed last pass its lease, then stop
	// the schedule and let the last firing finish.
	time.Sleep(dsat.ScheduleLease + 2*time.Second)
	if _, err := r.c.PauseSchedule(r.ctx, "tick", true); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	info = waitSchedule(t, r, func(dsat.ScheduleInfo) bool { return true }, time.Second)
	last := info.LastSlot.Time
	if last.Before(chaosEnd) || info.Skipped != 0 || info.LastError != "" {
		t.Fatalf("the schedule stopped firing: last slot %s, chaos ended %s, skipped %d, %q", last, chaosEnd, info.Skipped, info.LastError)
	}
	// Exactly one task per slot, and no other task.
	seen := map[string]time.Time{}
	var late []time.Duration
	for s := first; !s.After(last); s = s.Add(time.Second) {
		task, err := r.c.SlotTask(r.ctx, "sched", "tick", s)
		if err != nil {
			t.Fatalf("slot %s: %v%s", s.Format(dsat.TimeFormat), err, r.logTails())
		}
		if prev, dup := seen[task]; dup {
			t.Fatalf("task %s is the task of slots %s and %s", task, prev, s)
		}
		seen[task] = s
		r.ids = append(r.ids, task)
		st, err := r.c.Get(r.ctx, task)
		if err != nil {
			t.Fatal(err)
		}
		late = append(late, st.CreatedAt.Sub(s))
	}
	if n := countTasks(t, r); n != len(seen) {
		t.Fatalf("%d tasks for %d slots (%s to %s)", n, len(seen), first.Format(time.TimeOnly), last.Format(time.TimeOnly))
	}
	r.waitFinal(60 * time.Second)
	for _, id := range r.ids {
		if st, err := r.c.Get(r.ctx, id); err != nil || st.Status != dsat.StatusSucceeded {
			t.Fatalf("task %s: %+v %v", id, st, err)
		}
	}
	sort.Slice(late, func(i, j int) bool { return late[i] < late[j] })
	t.Logf("%d slots over %s with %d SIGKILLs: one task each; submitted after the slot by %s (median), %s (90th), %s (max)",
		len(seen), last.Sub(first)+time.Second, kills, late[len(late)/2], late[len(late)*9/10], late[len(late)-1])
	// A slot whose claim holder was killed waits for the lease; a loaded
	// 2-core machine running 5 to 11 servers adds seconds.
	if max := late[len(late)-1]; max > 3*dsat.ScheduleLease {
		t.Fatalf("a slot's task came %s after it", max)
	}
}

// waitSchedule waits until the schedule "tick" satisfies ok.
func waitSchedule(t *testing.T, r *rig, ok func(dsat.ScheduleInfo) bool, limit time.Duration) dsat.ScheduleInfo {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		info, err := r.c.GetSchedule(r.ctx, "tick")
		if err == nil && ok(info) {
			return info
		}
		if time.Now().After(deadline) {
			t.Fatalf("schedule tick: %+v %v%s", info, err, r.logTails())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countTasks counts the pipeline's task hashes on every master.
func countTasks(t *testing.T, r *rig) int {
	t.Helper()
	var n atomic.Int64 // ForEachMaster runs on every master at once
	count := func(ctx context.Context, node redis.UniversalClient) error {
		for p := 0; p < r.p.Partitions; p++ {
			keys, err := node.Keys(ctx, r.c.Keys().Task(r.p.Partition(p), "*")).Result()
			if err != nil {
				return err
			}
			for _, k := range keys {
				if !strings.HasSuffix(k, ":log") && !strings.HasSuffix(k, ":res") {
					n.Add(1)
				}
			}
		}
		return nil
	}
	var err error
	if cc, ok := r.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(r.ctx, func(ctx context.Context, node *redis.Client) error { return count(ctx, node) })
	} else {
		err = count(r.ctx, r.rdb)
	}
	if err != nil {
		t.Fatal(err)
	}
	return int(n.Load())
}
