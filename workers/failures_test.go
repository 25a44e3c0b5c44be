package workers

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
	"github.com/dsat-dev/dsat/internal/wait"
)

const oneStep = `
name: one
version: 1.0.0
steps:
  a: {handler: work, timeout: 300ms, retries: 1, backoff: {initial: 10ms, max: 20ms}}
`

func TestTimeoutThenRetry(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, oneStep)
		m := NewMux()
		m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			if task.Attempt == 1 {
				<-ctx.Done() // passes the 300ms timeout
				return dsat.Result{}, ctx.Err()
			}
			return dsat.Result{Output: []byte(`"ok"`)}, nil
		})
		b.start(m, b.fast("s1"))
		ids := b.submit(1, `{}`)
		st := b.wait(ids, 10*time.Second)[0]
		if st.Status != dsat.StatusSucceeded || st.Steps["a"].Attempts != 2 {
			t.Fatalf("state %+v", st)
		}
		c := b.eventCounts(ids[0])
		if c["TIMEOUT"] != 1 || c["RETRY"] != 1 || c["ERROR"] != 0 {
			t.Fatalf("events %v", c)
		}
	})
}

func TestPanicIsAnErrorWithTheStackInTheLogOnly(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, oneStep)
		m := NewMux()
		m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			panic("kaboom")
		})
		b.start(m, b.fast("s1"))
		ids := b.submit(1, `{}`)
		st := b.wait(ids, 10*time.Second)[0]
		if st.Status != dsat.StatusFailed || st.Steps["a"].Error != "panic: kaboom" {
			t.Fatalf("state %+v", st)
		}
		if c := b.eventCounts(ids[0]); c["ERROR"] != 2 || c["DEAD"] != 1 {
			t.Fatalf("events %v", c)
		}
		if strings.Contains(st.Error, "goroutine") {
			t.Fatalf("stack leaked into the task's error: %q", st.Error)
		}
		if !strings.Contains(b.log.String(), "failures_test.go") {
			t.Fatal("stack not logged")
		}
	})
}

// TestPoisonTokenIsDeadLetteredWhileOthersFlow: a token that "crashes its
// satellite" each time (here: the handler never returns and its satellite
// is stopped) is delivered again and again; past its attempts it goes to
// the dead letters while other tasks keep flowing.
func TestPoisonTokenIsDeadLetteredWhileOthersFlow(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: one
version: 1.0.0
steps:
  a: {handler: work, timeout: 10s, retries: 1, concurrency: {min: 1, max: 1}}
`)
		poison := b.submit(1, `{"poison":true}`)[0]
		// Two deliveries of the poison entry, each on a satellite that dies.
		for i := 0; i < 2; i++ {
			m := NewMux()
			taken := make(chan struct{}, 10)
			m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
				taken <- struct{}{}
				<-ctx.Done()
				return dsat.Result{}, ctx.Err()
			})
			cfg := b.fast("crashy")
			cfg.ID = cfg.ID + string(rune('0'+i))
			cfg.ShutdownTimeout = time.Millisecond
			cfg.VisibilityTimeout = 300 * time.Millisecond
			s, err := New(b.c, m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Start(b.ctx); err != nil {
				t.Fatal(err)
			}
			select {
			case <-taken:
			case <-time.After(5 * time.Second):
				t.Fatalf("delivery %d did not happen", i+1)
			}
			_ = s.Stop(context.Background())
		}
		// The poison entry was delivered twice; the step allows 2 attempts,
		// so the third delivery (the healthy satellite's reclaim) is poison.
		var runs atomic.Int64
		m := NewMux()
		m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			runs.Add(1)
			return dsat.Result{Output: task.Payload}, nil
		})
		cfg := b.fast("healthy")
		cfg.VisibilityTimeout = 300 * time.Millisecond
		b.start(m, cfg)
		others := b.submit(5, `{}`)
		for _, st := range b.wait(others, 10*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("other task %s: %s", st.ID, st.Status)
			}
		}
		st := b.wait([]string{poison}, 10*time.Second)[0]
		if st.Status != dsat.StatusFailed || !strings.Contains(st.Error, "poison: delivered 3 times") {
			t.Fatalf("poison task %+v", st)
		}
		if runs.Load() != 5 {
			t.Fatalf("healthy satellite ran %d handlers, want 5 (the poison token must not run)", runs.Load())
		}
		dead, _, _ := b.c.Dead(b.ctx, "one", "", 10)
		if len(dead) != 1 || dead[0].Task != poison {
			t.Fatalf("dead letters %+v", dead)
		}
	})
}

// TestRenewedHandlerIsNotRunTwice: a handler running longer than the
// visibility timeout renews its claim, so a second satellite does not
// reclaim and rerun it.
func TestRenewedHandlerIsNotRunTwice(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		if !be.Real {
			// miniredis's XCLAIM JUSTID counts a delivery and its idle
			// times follow its own clock; the renewal contract is judged on
			// real Redis (PITFALLS.md).
			t.Skip("renewal is judged on real Redis only")
		}
		b := setup(t, be, `
name: one
version: 1.0.0
steps:
  a: {handler: work, timeout: 5s}
`)
		var runs atomic.Int64
		m := func() *Mux {
			m := NewMux()
			m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
				runs.Add(1)
				wait.Sleep(ctx, 2500*time.Millisecond)
				return dsat.Result{Output: task.Payload}, ctx.Err()
			})
			return m
		}
		for _, id := range []string{"s1", "s2"} {
			cfg := b.fast(id)
			cfg.VisibilityTimeout = 900 * time.Millisecond
			b.start(m(), cfg)
		}
		ids := b.submit(1, `{}`)
		st := b.wait(ids, 15*time.Second)[0]
		if st.Status != dsat.StatusSucceeded {
			t.Fatalf("state %+v", st)
		}
		if runs.Load() != 1 {
			t.Fatalf("handler ran %d times, want 1", runs.Load())
		}
		if c := b.eventCounts(ids[0]); c["ACK"] != 1 {
			t.Fatalf("events %v", c)
		}
	})
}

func TestCancelReachesRunningHandlerWithinASecond(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: one
version: 1.0.0
steps:
  a: {handler: work, timeout: 30s}
`)
		started := make(chan struct{})
		stopped := make(chan time.Time, 1)
		m := NewMux()
		m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			close(started)
			<-ctx.Done()
			stopped <- time.Now()
			return dsat.Result{}, ctx.Err()
		})
		cfg := b.fast("s1")
		cfg.WatchInterval = 0 // the default (500ms), as users get it
		b.start(m, cfg)
		id := b.submit(1, `{}`)[0]
		<-started
		at := time.Now()
		if err := b.c.Cancel(b.ctx, id, "test"); err != nil {
			t.Fatal(err)
		}
		select {
		case got := <-stopped:
			if d := got.Sub(at); d > time.Second {
				t.Fatalf("handler saw the cancel after %s", d)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("handler never saw the cancel")
		}
		st := b.wait([]string{id}, 5*time.Second)[0]
		if st.Status != dsat.StatusCancelled {
			t.Fatalf("status %s", st.Status)
		}
		time.Sleep(200 * time.Millisecond)
		b.streamsEmpty()
		if c := b.eventCounts(id); c["ERROR"] != 0 || c["CANCELLED"] != 1 {
			t.Fatalf("events %v", c)
		}
	})
}

// countingHook counts the commands a client sends.
type countingHook struct{ n atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error { h.n.Add(1); return next(ctx, cmd) }
}
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error { h.n.Add(int64(len(cmds))); return next(ctx, cmds) }
}

// TestNoGroupRecoversWithoutSpinning deletes the step streams (as a
// FLUSHALL or an eviction would): the reader recreates its groups with
// backoff, work flows again, and the command rate stays bounded.
func TestNoGroupRecoversWithoutSpinning(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		t.Parallel() // each backend counts its own client's commands
		b := setup(t, be, oneStep)
		hook := &countingHook{}
		b.rdb.AddHook(hook)
		m := NewMux()
		m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		cfg := b.fast("s1")
		cfg.Block = time.Second
		b.start(m, cfg)
		b.wait(b.submit(1, `{}`), 5*time.Second)
		key := b.c.Keys().Step(b.p.Partition(0), "a")
		if err := b.rdb.Del(b.ctx, key).Err(); err != nil {
			t.Fatal(err)
		}
		// A stream without the group: XREADGROUP answers NOGROUP at once.
		if err := b.rdb.XAdd(b.ctx, &redis.XAddArgs{Stream: key, Values: []any{"x", "y"}}).Err(); err != nil {
			t.Fatal(err)
		}
		before := hook.n.Load()
		time.Sleep(2 * time.Second)
		calls := hook.n.Load() - before
		// Idle steady state is ~1 read per Block plus the loops (promote
		// every 50ms, scale every 100ms, heartbeat): ~40 calls/s here. A
		// hot NOGROUP loop would make thousands.
		if calls > 200 {
			t.Fatalf("%d commands in 2s after NOGROUP: the loop spins", calls)
		}
		// The reader notices NOGROUP when its blocking read (Block 1s) ends,
		// or the reclaim scan (every 100ms) first, whichever reads the
		// stream next; on a loaded machine that can take longer than the
		// window above. (Until the scan logged it, a scan that came first
		// recreated the group silently and this waited in vain.)
		for deadline := time.Now().Add(15 * time.Second); !strings.Contains(b.log.String(), "consumer group missing"); {
			if time.Now().After(deadline) {
				t.Fatal("NOGROUP not noticed within 15s")
			}
			time.Sleep(50 * time.Millisecond)
		}
		ids := b.submit(3, `{}`)
		for _, st := range b.wait(ids, 10*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("after recovery: %+v", st)
			}
		}
		// The junk entry added before the group existed was dead-lettered.
		dead, _, _ := b.c.Dead(b.ctx, "one", "", 10)
		if len(dead) != 1 || !strings.Contains(dead[0].Reason, "invalid envelope") {
			t.Fatalf("dead letters %+v", dead)
		}
	})
}

func TestShutdownUnderLoadLosesNothing(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, twoStep)
		m := func() *Mux {
			m := NewMux()
			RegisterBuiltins(m, 0)
			m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
				wait.Sleep(ctx, 20*time.Millisecond)
				if ctx.Err() != nil {
					return dsat.Result{}, ctx.Err()
				}
				return dsat.Result{Output: task.Payload}, nil
			})
			return m
		}
		ids := b.submit(100, `{}`)
		cfg := b.fast("s1")
		cfg.ShutdownTimeout = 10 * time.Millisecond // some handlers get cut off
		s1 := b.start(m(), cfg)
		time.Sleep(150 * time.Millisecond)
		if err := s1.Stop(context.Background()); err != nil && !strings.Contains(err.Error(), "shutdown timeout") {
			t.Fatal(err)
		}
		cfg2 := b.fast("s2")
		cfg2.VisibilityTimeout = 500 * time.Millisecond
		b.start(m(), cfg2)
		for _, st := range b.wait(ids, 20*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("task %s: %s", st.ID, st.Status)
			}
		}
		for _, id := range ids {
			if c := b.eventCounts(id); c["HAPPY_END"] != 1 || c["END"] != 2 || c["ERROR"] != 0 {
				t.Fatalf("task %s events %v", id, c)
			}
		}
		b.streamsEmpty()
	})
}

func TestNewRejectsUnknownHandlersAndBadSettings(t *testing.T) {
	b := setup(t, redistest.Backends()[0], `
name: p
version: 1.0.0
steps:
  a: {handler: nope, next: [b]}
  b: {handler: sleep, with: {ms: soon}, next: [c]}
  c: {handler: exec, with: {command: []}}
`)
	m := NewMux()
	RegisterBuiltins(m, 0)
	_, err := New(b.c, m, Config{})
	var uh *UnknownHandlerError
	if !errors.As(err, &uh) || uh.Step != "a" {
		t.Fatalf("error %v", err)
	}
	for _, want := range []string{`step "a": field "handler": no handler named "nope"`, `step "b": field "with": with.ms must be a whole number`, `step "c": field "with": with.command must be a non-empty list`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}

// TestDeadConsumersRemovedOnlyWhenNothingPending: a consumer of a dead
// satellite with a pending token is kept until that token was reclaimed;
// one with nothing pending is removed.
func TestDeadConsumersRemovedOnlyWhenNothingPending(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		if !be.Real {
			// miniredis reports every consumer's idle time as -1 ms.
			t.Skip("consumer idle times are judged on real Redis only")
		}
		b := setup(t, be, `
name: one
version: 1.0.0
steps:
  a: {handler: work, timeout: 1s}
`)
		key := b.c.Keys().Step(b.p.Partition(0), "a")
		if err := b.rdb.XGroupCreateMkStream(b.ctx, key, "a", "0").Err(); err != nil {
			t.Fatal(err)
		}
		ids := b.submit(1, `{}`)
		// "holder" took the token and died; "idler" never held anything.
		if err := b.rdb.XReadGroup(b.ctx, &redis.XReadGroupArgs{Group: "a", Consumer: "holder", Streams: []string{key, ">"}, Count: 1, Block: -1}).Err(); err != nil {
			t.Fatal(err)
		}
		readAt := time.Now() // the token is pending from (before) now until reclaimed
		if err := b.rdb.XGroupCreateConsumer(b.ctx, key, "a", "idler").Err(); err != nil {
			t.Fatal(err)
		}
		m := NewMux()
		m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		cfg := b.fast("live")
		const vis = 5 * time.Second
		cfg.VisibilityTimeout = vis
		cfg.ReclaimInterval = 50 * time.Millisecond
		cfg.DeadConsumerIdle = time.Millisecond
		b.start(m, cfg)
		consumers := func() map[string]int64 {
			cs, _ := b.rdb.XInfoConsumers(b.ctx, key, "a").Result()
			out := map[string]int64{}
			for _, c := range cs {
				out[c.Name] = c.Pending
			}
			return out
		}
		// Until the token is reclaimed (vis after holder read it), "holder"
		// must stay, although removal passes run about every second;
		// "idler" goes. The window is counted from the read and each
		// answer is judged only if it came before the window's end, so a
		// slow start or a slow reply on a loaded machine leaves fewer
		// passes to watch but never blames a legitimate removal.
		window := vis - 500*time.Millisecond
		idlerGone := false
		for time.Since(readAt) < window {
			cs := consumers()
			if time.Since(readAt) >= window {
				break
			}
			if _, ok := cs["holder"]; !ok {
				t.Fatal("the consumer holding a pending token was removed")
			}
			_, idler := cs["idler"]
			idlerGone = idlerGone || !idler
			time.Sleep(20 * time.Millisecond)
		}
		if !idlerGone {
			t.Fatal("no removal pass ran while the token was pending: the test proves nothing")
		}
		st := b.wait(ids, 10*time.Second)[0]
		if st.Status != dsat.StatusSucceeded {
			t.Fatalf("task %s", st.Status)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			cs := consumers()
			_, holder := cs["holder"]
			_, idler := cs["idler"]
			if !holder && !idler {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("dead consumers not removed: %v", cs)
			}
			time.Sleep(50 * time.Millisecond)
		}
	})
}

// TestSkipRetryReasonWithoutMarker: a handler's SkipRetry error goes to
// the dead letters at once, and the task's error is the reason alone,
// without the marker's text.
func TestSkipRetryReasonWithoutMarker(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, "name: sk\nversion: 1.0.0\nsteps:\n  a: {handler: bad}\n")
		m := NewMux()
		m.HandleFunc("bad", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{}, fmt.Errorf("%w: the payload needs a text", SkipRetry)
		})
		b.start(m, b.fast("s1"))
		st := b.wait(b.submit(1, `{}`), 5*time.Second)[0]
		if st.Status != dsat.StatusFailed || st.Error != "a: the payload needs a text" || st.Steps["a"].Attempts != 1 {
			t.Fatalf("state %+v", st)
		}
	})
}
