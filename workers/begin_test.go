package workers

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
	"github.com/dsat-dev/dsat/internal/wait"
)

const beginYAML = `
name: lazy
version: 1.0.0
steps:
  fast: {handler: fast, next: [slow]}
  slow: {handler: slow}
`

// TestBeginWindow: a handler that returns within the begin window runs
// without a begin call, and its ACK (at the time it started) shares the
// entry of its END; a handler that outlives the window is begun while it
// runs, so its ACK is an entry of its own, before its END.
func TestBeginWindow(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, beginYAML)
		m := NewMux()
		m.HandleFunc("fast", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		var sawRunning atomic.Bool
		m.HandleFunc("slow", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			wait.Sleep(ctx, 150*time.Millisecond)
			// Begun by now: the task state says this step is running here.
			if st, err := b.c.Get(ctx, task.ID); err == nil && st.Steps["slow"].State == "running" {
				sawRunning.Store(true)
			}
			return dsat.Result{Output: task.Payload}, nil
		})
		cfg := b.fast("s1")
		cfg.BeginWindow = 50 * time.Millisecond
		b.start(m, cfg)
		ids := b.submit(3, `{"n":1}`)
		b.wait(ids, 10*time.Second)
		for _, id := range ids {
			evs, err := b.c.History(b.ctx, id, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]dsat.Event{}
			var got []string
			for _, e := range evs {
				byName[e.Event+":"+e.Step] = e
				got = append(got, e.Event+":"+e.Step)
			}
			want := "INIT: ACK:fast END:fast SEND:fast ACK:slow END:slow HAPPY_END:"
			if strings.Join(got, " ") != want {
				t.Fatalf("events %v, want %s", got, want)
			}
			// The firehose holds one entry per script call.
			call := b.firehoseEntries(id)
			ackFast, endFast := byName["ACK:fast"], byName["END:fast"]
			if call[ackFast.Seq] != call[endFast.Seq] {
				t.Errorf("fast handler: ACK and END written by different calls (a begin call was made)")
			}
			if ackFast.Worker != "s1" || ackFast.At.After(endFast.At.Time) {
				t.Errorf("fast ACK %+v, END at %v", ackFast, endFast.At)
			}
			if ackSlow, endSlow := byName["ACK:slow"], byName["END:slow"]; call[ackSlow.Seq] == call[endSlow.Seq] {
				t.Errorf("slow handler: ACK written with END: not begun while running")
			}
		}
		if !sawRunning.Load() {
			t.Fatal("a handler past the begin window never saw its step running")
		}
		b.streamsEmpty()
	})
}

// TestLateBeginDropsCancelled: a handler that outlives the begin window of
// a task cancelled meanwhile is cancelled by the late begin, and its
// result is not recorded.
func TestLateBeginDropsCancelled(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, beginYAML)
		m := NewMux()
		started := make(chan string, 1)
		var sawCancel atomic.Bool
		m.HandleFunc("fast", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			started <- task.ID
			<-ctx.Done()
			sawCancel.Store(true)
			return dsat.Result{}, ctx.Err()
		})
		m.HandleFunc("slow", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		cfg := b.fast("s1")
		cfg.BeginWindow = 300 * time.Millisecond
		cfg.WatchInterval = time.Hour // only the late begin can notice
		b.start(m, cfg)
		ids := b.submit(1, `{}`)
		id := <-started
		if err := b.c.Cancel(b.ctx, id, "test"); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for !sawCancel.Load() {
			if time.Now().After(deadline) {
				t.Fatal("the handler was not cancelled by the late begin")
			}
			time.Sleep(10 * time.Millisecond)
		}
		st := b.wait(ids, 5*time.Second)[0]
		if st.Status != dsat.StatusCancelled {
			t.Fatalf("status %s", st.Status)
		}
		if c := b.eventCounts(id); c["ACK"] != 0 || c["ERROR"] != 0 || c["END"] != 0 {
			t.Fatalf("events after cancel: %v", c)
		}
		b.streamsEmpty()
	})
}

// firehoseEntries maps each event of the task (by seq) to the id of the
// firehose entry that holds it: the script call that wrote it.
func (b *bundle) firehoseEntries(task string) map[int64]string {
	b.t.Helper()
	tid, _ := dsat.ParseTaskID(task)
	msgs, err := b.rdb.XRange(b.ctx, b.c.Keys().Firehose(tid.Partition), "-", "+").Result()
	if err != nil {
		b.t.Fatal(err)
	}
	out := map[int64]string{}
	for _, m := range msgs {
		evs, err := dsat.ParseEntry(m)
		if err != nil {
			b.t.Fatal(err)
		}
		for _, e := range evs {
			if e.Task == task {
				out[e.Seq] = m.ID
			}
		}
	}
	return out
}

// TestDelayedTaskRunsWhenDue: a satellite's promote loop brings a delayed
// task's entry token to its step when due, not before.
func TestDelayedTaskRunsWhenDue(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, beginYAML)
		m := NewMux()
		m.HandleFunc("fast", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		m.HandleFunc("slow", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		b.start(m, b.fast("s1"))
		runAt := time.Now().Add(500 * time.Millisecond)
		s, err := b.c.Submit(b.ctx, "lazy", []byte(`{}`), dsat.SubmitOptions{RunAt: runAt})
		if err != nil {
			t.Fatal(err)
		}
		b.wait([]string{s.ID}, 10*time.Second)
		evs, err := b.c.History(b.ctx, s.ID, "", 0)
		if err != nil || len(evs) < 2 || evs[1].Event != dsat.EventAck {
			t.Fatalf("events %v %v", evs, err)
		}
		if evs[1].At.Before(runAt.Truncate(time.Millisecond)) {
			t.Fatalf("the first step started at %v, before its run time %v", evs[1].At, runAt)
		}
		if late := evs[1].At.Sub(runAt); late > 1500*time.Millisecond {
			t.Fatalf("the first step started %v after its run time", late)
		}
	})
}
