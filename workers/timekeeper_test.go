package workers

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const queueTimeoutYAML = `
name: qt
version: 1.0.0
steps:
  a: {handler: count, next: [b], queue_timeout: 1s, retries: 0}
  b: {handler: count}
`

// aheadClient is a client of b's pipeline whose clock runs an hour ahead:
// every token it sees has waited an hour, every deadline has passed.
func aheadClient(t *testing.T, b *bundle) *dsat.Client { return aheadBy(t, b, time.Hour) }

// aheadBy is a client of b's pipeline whose clock runs d ahead.
func aheadBy(t *testing.T, b *bundle, d time.Duration) *dsat.Client {
	t.Helper()
	c, err := dsat.NewClient(b.rdb, dsat.Config{Now: func() time.Time { return time.Now().Add(d) }}, b.p)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// runTimeKeeper runs a TimeKeeper of c looking every 20ms until the
// returned stop is called; stop reports whether it ended within 5s.
func runTimeKeeper(b *bundle, c *dsat.Client) (stop func() bool) {
	ctx, cancel := context.WithCancel(b.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		NewTimeKeeper(c, zerolog.New(b.log), 20*time.Millisecond).Run(ctx)
	}()
	return func() bool {
		cancel()
		select {
		case <-done:
			return true
		case <-time.After(5 * time.Second):
			return false
		}
	}
}

// TestReadTooLateTimesOut: a satellite that reads a token which waited in
// its stream past the step's queue_timeout fails it with TIMEOUT, by its
// own name and without an ACK, and never runs its handler.
func TestReadTooLateTimesOut(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, queueTimeoutYAML)
		var runs atomic.Int32
		m := NewMux()
		m.HandleFunc("count", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			runs.Add(1)
			return dsat.Result{Output: task.Payload}, nil
		})
		cfg := b.fast("s1")
		cfg.PromoteInterval = time.Hour // the time keeper runs once, at start: before the tasks exist
		s, err := New(aheadClient(t, b), m, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = s.Stop(context.Background()) })
		time.Sleep(50 * time.Millisecond)
		ids := b.submit(3, `{}`)
		for _, st := range b.wait(ids, 10*time.Second) {
			if st.Status != dsat.StatusFailed || !strings.Contains(st.Steps["a"].Error, "queue_timeout of 1s") {
				t.Fatalf("state %+v", st)
			}
			evs, err := b.c.History(b.ctx, st.ID, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range evs {
				got = append(got, e.Event+":"+e.Worker)
			}
			if want := "INIT: TIMEOUT:s1 DEAD:"; strings.Join(got, " ") != want {
				t.Fatalf("events %v, want %s", got, want)
			}
		}
		if n := runs.Load(); n != 0 {
			t.Fatalf("the handler ran %d times", n)
		}
	})
}

// TestTimeKeeper: with no satellite at all, a TimeKeeper (what dsat serve
// runs) cancels tasks past their deadline and times out tokens nobody read
// within their step's queue_timeout; it stops with its context.
func TestTimeKeeper(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, queueTimeoutYAML)
		late := b.submit(1, `{}`)[0]
		s, err := b.c.Submit(b.ctx, "qt", []byte(`{}`), dsat.SubmitOptions{Deadline: time.Now().Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		stop := runTimeKeeper(b, aheadClient(t, b))
		sts := b.wait([]string{late, s.ID}, 10*time.Second)
		if !stop() {
			t.Fatal("the time keeper did not stop with its context")
		}
		// The deadline came first: the task with one is cancelled, the
		// other failed by its queue timeout.
		if sts[1].Status != dsat.StatusCancelled {
			t.Fatalf("task with a deadline: %+v", sts[1])
		}
		if sts[0].Status != dsat.StatusFailed || !strings.Contains(sts[0].Error, "queue_timeout") {
			t.Fatalf("task past its queue timeout: %+v", sts[0])
		}
		evs, err := b.c.History(b.ctx, s.ID, "", 0)
		if err != nil || len(evs) != 2 || !strings.Contains(string(evs[1].Detail), `"deadline"`) {
			t.Fatalf("events %v %v", evs, err)
		}
	})
}

// TestTimeKeeperRetriesAndDeadLetters: with no satellite, a token that
// times out in the queue is retried (the TimeKeeper moves the retry back
// to its step) and, timing out again, dead-lettered: the task fails
// instead of waiting in the retry set for a satellite.
func TestTimeKeeperRetriesAndDeadLetters(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: qt
version: 1.0.0
steps:
  a: {handler: count, queue_timeout: 1s, retries: 1, backoff: {initial: 50ms, max: 50ms}}
`)
		id := b.submit(1, `{}`)[0]
		ahead := aheadClient(t, b)
		stop := runTimeKeeper(b, ahead)
		st := b.wait([]string{id}, 10*time.Second)[0]
		stop()
		// The step statistics count what the time keeper did (issue 16):
		// two failed attempts, one dead token (by its clock's buckets).
		stats, err := ahead.Stats(b.ctx, "qt", time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if tot := stats.Steps["a"].Totals; tot.Failed != 2 || tot.Dead != 1 || tot.Ended != 0 {
			t.Fatalf("stats of a: %+v; want 2 failed, 1 dead", tot)
		}
		evs, err := b.c.History(b.ctx, id, "", 0)
		var got []string
		for _, e := range evs {
			got = append(got, e.Event)
		}
		if err != nil || st.Status != dsat.StatusFailed || strings.Join(got, " ") != "INIT TIMEOUT RETRY TIMEOUT DEAD" {
			t.Fatalf("status %s, events %v (%v)", st.Status, got, err)
		}
	})
}

// TestPausedStepDoesNotTimeOut: a paused step's tokens wait past its
// queue_timeout without timing out (the satellite's time keeper leaves a
// held step alone), and run when it is resumed (a token's wait counts
// from the end of the hold).
func TestPausedStepDoesNotTimeOut(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		t.Parallel() // each backend waits out the queue_timeout
		// A queue_timeout of 2s: after resume the satellite has that long
		// (from the keeper's last note of the pause) to begin the tokens
		// before they are due, which 1s did not always leave a loaded
		// machine.
		b := setup(t, be, strings.Replace(queueTimeoutYAML, "queue_timeout: 1s", "queue_timeout: 2s", 1))
		m := NewMux()
		m.HandleFunc("count", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		if err := b.c.Pause(b.ctx, "qt", "a"); err != nil {
			t.Fatal(err)
		}
		cfg := b.fast("s1")
		cfg.FlowInterval = 50 * time.Millisecond
		b.start(m, cfg)
		ids := b.submit(2, `{}`)
		time.Sleep(3 * time.Second) // past the step's queue_timeout of 2s
		for _, id := range ids {
			if st, _ := b.c.Get(b.ctx, id); st.Status != dsat.StatusPending || st.Steps["a"].Error != "" {
				t.Fatalf("a token of a paused step timed out: %+v", st)
			}
		}
		if err := b.c.Resume(b.ctx, "qt", "a"); err != nil {
			t.Fatal(err)
		}
		for _, st := range b.wait(ids, 5*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("after resume: %+v", st)
			}
		}
	})
}

// TestTimeKeeperPrunesTaskIndex: once a finished task's keys expired (here
// deleted, with a clock a retention ahead), the time keeper removes its
// member from the task index; the member of a task whose keys still exist
// stays.
func TestTimeKeeperPrunesTaskIndex(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, oneStep)
		m := NewMux()
		m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		b.start(m, b.fast("s1"))
		ids := b.submit(30, `{}`)
		b.wait(ids, 10*time.Second)
		members := func() (n int64) {
			for p := 0; p < b.p.Partitions; p++ {
				n += b.rdb.ZCard(b.ctx, b.c.Keys().TaskIndex(b.p.Partition(p))).Val()
			}
			return n
		}
		if n := members(); n != 30 {
			t.Fatalf("%d index members, want 30", n)
		}
		for _, id := range ids[1:] {
			tid, _ := dsat.ParseTaskID(id)
			b.rdb.Del(b.ctx, b.c.Keys().Task(tid.Partition, id))
		}
		defer runTimeKeeper(b, aheadBy(t, b, dsat.DefaultRetention+time.Hour))()
		for deadline := time.Now().Add(10 * time.Second); members() != 1; {
			if time.Now().After(deadline) {
				t.Fatalf("%d index members after 10s, want 1 (the task whose keys exist)", members())
			}
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(100 * time.Millisecond) // more rounds keep it
		if n := members(); n != 1 {
			t.Fatalf("%d index members, want 1", n)
		}
	})
}

// TestTimeKeeperTwoVersions: a time keeper of two versions of a pipeline
// (a draining one beside its successor) sweeps each partition by its own
// version's steps: 1.0's step a, gone from 2.0, still times out its
// tokens by 1.0's queue_timeout (and the keeper does not crash on it).
func TestTimeKeeperTwoVersions(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, queueTimeoutYAML)
		late := b.submit(1, `{}`)[0]
		v2, err := dsat.ParsePipeline("v2.yaml", []byte("name: qt\nversion: 2.0.0\nsteps:\n  z: {handler: count}\n"))
		if err != nil {
			t.Fatal(err)
		}
		ahead, err := dsat.NewClient(b.rdb, dsat.Config{Now: func() time.Time { return time.Now().Add(time.Hour) }}, b.p, v2)
		if err != nil {
			t.Fatal(err)
		}
		stop := runTimeKeeper(b, ahead)
		st := b.wait([]string{late}, 10*time.Second)[0]
		if !stop() {
			t.Fatal("the time keeper did not stop with its context")
		}
		if st.Status != dsat.StatusFailed || !strings.Contains(st.Error, "queue_timeout") {
			t.Fatalf("1.0's task past its queue timeout: %+v", st)
		}
	})
}
