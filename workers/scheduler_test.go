package workers

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestSchedulersFireEachSlotOnce: three schedulers (three processes) run
// against one Redis while a fake clock passes 20 slots of a schedule of
// every 1s: each slot gets one task, and Stop ends every loop (goleak
// checks).
func TestSchedulersFireEachSlotOnce(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		rdb, _ := be.New(t)
		p, err := dsat.ParsePipeline("p.yaml", []byte("name: p\nversion: 1.0.0\npartitions: 2\nsteps:\n  a: {handler: echo}\n"))
		if err != nil {
			t.Fatal(err)
		}
		var mu sync.Mutex
		now := time.Date(2026, 1, 2, 10, 0, 0, 0, time.UTC)
		clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		ctx := context.Background()
		var c0 *dsat.Client
		var scheds []*Scheduler
		for i := 0; i < 3; i++ {
			c, err := dsat.NewClient(rdb, dsat.Config{Now: clock}, p)
			if err != nil {
				t.Fatal(err)
			}
			if c0 == nil {
				c0 = c
				if _, _, err := c.PutSchedule(ctx, dsat.ScheduleSpec{ID: "tick", Pipeline: "p", Every: "1s", Catchup: "all"}); err != nil {
					t.Fatal(err)
				}
			}
			s := NewScheduler(c, SchedulerConfig{Interval: 5 * time.Millisecond, Logger: zerolog.New(zerolog.NewTestWriter(t))})
			if err := s.Start(ctx); err != nil {
				t.Fatal(err)
			}
			scheds = append(scheds, s)
		}
		for i := 0; i < 20; i++ {
			time.Sleep(25 * time.Millisecond)
			mu.Lock()
			now = now.Add(time.Second)
			mu.Unlock()
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			info, err := c0.GetSchedule(ctx, "tick")
			if err == nil && info.LastSlot.Equal(now) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the last slot did not fire: %+v %v", info, err)
			}
			time.Sleep(10 * time.Millisecond)
		}
		for _, s := range scheds {
			s.Stop()
		}
		seen := map[string]bool{}
		for i := 1; i <= 20; i++ {
			task, err := c0.SlotTask(ctx, "p", "tick", now.Add(time.Duration(i-20)*time.Second))
			if err != nil || seen[task] {
				t.Fatalf("slot %d: %q %v", i, task, err)
			}
			seen[task] = true
		}
		n := 0
		for part := 0; part < 2; part++ {
			keys, _ := rdb.Keys(ctx, c0.Keys().Task(p.Partition(part), "*")).Result()
			for _, k := range keys {
				if k[len(k)-4:] != ":log" {
					n++
				}
			}
		}
		if n != 20 {
			t.Fatalf("%d tasks for 20 slots", n)
		}
	})
}
