package workers

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// bundle is what satellite tests share (River's setup(t) pattern).
type bundle struct {
	t   *testing.T
	ctx context.Context
	rdb redis.UniversalClient
	c   *dsat.Client
	p   *dsat.Pipeline
	log *logBuffer
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func setup(t *testing.T, b redistest.Backend, yaml string) *bundle {
	t.Helper()
	rdb, _ := b.New(t)
	p, err := dsat.ParsePipeline("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	return &bundle{t: t, ctx: context.Background(), rdb: rdb, c: c, p: p, log: &logBuffer{}}
}

// fast returns a Config with short timings for tests.
func (b *bundle) fast(id string) Config {
	return Config{ID: id, Logger: zerolog.New(b.log).Level(zerolog.InfoLevel), Block: 100 * time.Millisecond,
		PromoteInterval: 50 * time.Millisecond, HeartbeatInterval: 200 * time.Millisecond, ScaleInterval: 100 * time.Millisecond,
		WatchInterval: 50 * time.Millisecond, ReclaimInterval: 100 * time.Millisecond, ShutdownTimeout: 2 * time.Second}
}

func (b *bundle) start(mux *Mux, cfg Config) *Satellite {
	b.t.Helper()
	s, err := New(b.c, mux, cfg)
	if err != nil {
		b.t.Fatal(err)
	}
	if err := s.Start(b.ctx); err != nil {
		b.t.Fatal(err)
	}
	b.t.Cleanup(func() { _ = s.Stop(context.Background()) })
	return s
}

func (b *bundle) submit(n int, payload string) []string {
	b.t.Helper()
	var ids []string
	for i := 0; i < n; i++ {
		s, err := b.c.Submit(b.ctx, b.p.Name, []byte(payload), dsat.SubmitOptions{})
		if err != nil {
			b.t.Fatal(err)
		}
		ids = append(ids, s.ID)
	}
	return ids
}

// wait polls until every task is final and returns their states. It
// fails when no task became final for limit (stuck), or after 5 × limit in
// all: a loaded machine slows the tasks down, a stall stops them.
func (b *bundle) wait(ids []string, limit time.Duration) []*dsat.TaskState {
	b.t.Helper()
	deadline, hardStop, least := time.Now().Add(limit), time.Now().Add(5*limit), len(ids)+1
	for {
		var out []*dsat.TaskState
		pending := 0
		for _, id := range ids {
			st, err := b.c.Get(b.ctx, id)
			if err != nil {
				b.t.Fatal(err)
			}
			if !dsat.Final(st.Status) {
				pending++
			}
			out = append(out, st)
		}
		if pending == 0 {
			return out
		}
		if pending < least {
			least, deadline = pending, time.Now().Add(limit)
			if deadline.After(hardStop) {
				deadline = hardStop
			}
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%d of %d tasks not final, none ended for %s or %s in all (first: %+v)\nlog:\n%s",
				pending, len(ids), limit, 5*limit, out[0], tail(b.log.String(), 3000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitBacklog polls until step's backlog is n; after limit it fails with
// what, the backlog last read.
func (b *bundle) waitBacklog(step string, n int64, limit time.Duration, what string) {
	b.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		got, err := b.c.Backlog(b.ctx, b.p, step)
		if err != nil {
			b.t.Fatal(err)
		}
		if got == n {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("%s: %s's backlog %d, want %d", what, step, got, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// eventCounts counts each task's events by name and checks seq 1..n.
func (b *bundle) eventCounts(id string) map[string]int {
	b.t.Helper()
	evs, err := b.c.History(b.ctx, id, "", 0)
	if err != nil {
		b.t.Fatal(err)
	}
	out := map[string]int{}
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			b.t.Fatalf("task %s: event %d has seq %d", id, i, e.Seq)
		}
		out[e.Event]++
	}
	return out
}

// streamsEmpty checks no step stream holds entries or pending ones.
func (b *bundle) streamsEmpty() {
	b.t.Helper()
	for n := 0; n < b.p.Partitions; n++ {
		for _, s := range b.p.Order {
			key := b.c.Keys().Step(b.p.Partition(n), s)
			if l := b.rdb.XLen(b.ctx, key).Val(); l != 0 {
				b.t.Fatalf("stream %s holds %d entries", key, l)
			}
		}
	}
}

const twoStep = `
name: two
version: 1.0.0
partitions: 2
steps:
  a: {handler: work, next: [b], timeout: 2s, concurrency: {min: 2, max: 4}}
  b: {handler: echo}
`

func TestTwoSatellitesShareAStep(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, twoStep)
		mk := func() *Mux {
			m := NewMux()
			RegisterBuiltins(m, 0)
			m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
				time.Sleep(5 * time.Millisecond)
				return dsat.Result{Output: []byte(fmt.Sprintf(`{"attempt":%d}`, task.Attempt))}, nil
			})
			return m
		}
		s1 := b.start(mk(), b.fast("s1"))
		s2 := b.start(mk(), b.fast("s2"))
		ids := b.submit(60, `{}`)
		for _, st := range b.wait(ids, 20*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("task %s: %s", st.ID, st.Status)
			}
		}
		p1 := s1.Info().Steps["two/a"].Processed
		p2 := s2.Info().Steps["two/a"].Processed
		if p1 == 0 || p2 == 0 || p1+p2 != 60 {
			t.Fatalf("step a processed %d by s1 and %d by s2, want both > 0 and 60 in all", p1, p2)
		}
		for _, id := range ids {
			c := b.eventCounts(id)
			if c["END"] != 2 || c["HAPPY_END"] != 1 {
				t.Fatalf("task %s events %v", id, c)
			}
		}
		b.streamsEmpty()
	})
}

// TestCrashedSatelliteTokensAreReclaimed: s1 takes tokens and "crashes"
// (stops without acknowledging); s2 finishes them after the visibility
// timeout, each task's state changing exactly once.
func TestCrashedSatelliteTokensAreReclaimed(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, twoStep)
		started := make(chan struct{}, 100)
		stuck := NewMux()
		RegisterBuiltins(stuck, 0)
		stuck.HandleFunc("work", func(ctx context.Context, _ *dsat.Task) (dsat.Result, error) {
			started <- struct{}{}
			<-ctx.Done() // hangs until the "crash"
			return dsat.Result{}, ctx.Err()
		})
		cfg1 := b.fast("s1")
		cfg1.ShutdownTimeout = time.Millisecond
		s1 := b.start(stuck, cfg1)
		submitted := time.Now()
		ids := b.submit(4, `{}`)
		for i := 0; i < 2; i++ { // s1's pool (min 2) holds two tokens
			<-started
		}
		_ = s1.Stop(context.Background()) // handlers cancelled, tokens left pending
		crashed := time.Now()

		var runs atomic.Int64
		good := NewMux()
		RegisterBuiltins(good, 0)
		good.HandleFunc("work", func(_ context.Context, t *dsat.Task) (dsat.Result, error) {
			runs.Add(1)
			return dsat.Result{Output: t.Payload}, nil
		})
		cfg2 := b.fast("s2")
		cfg2.VisibilityTimeout = time.Second
		b.start(good, cfg2)
		for _, st := range b.wait(ids, 15*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("task %s: %s", st.ID, st.Status)
			}
		}
		took := time.Since(crashed)
		if since := time.Since(submitted); since < time.Second {
			t.Fatalf("tokens finished %s after they were taken, before the visibility timeout", since)
		}
		t.Logf("crashed satellite's tokens finished %s after the crash (visibility timeout 1s)", took)
		if runs.Load() != 4 {
			t.Fatalf("s2 ran step a %d times, want 4", runs.Load())
		}
		for _, id := range ids {
			if c := b.eventCounts(id); c["END"] != 2 || c["HAPPY_END"] != 1 || c["ERROR"] != 0 {
				t.Fatalf("task %s events %v", id, c)
			}
		}
		if !strings.Contains(b.log.String(), "reclaimed abandoned tokens") {
			t.Fatal("no reclaim logged")
		}
		b.streamsEmpty()
	})
}

// TestStopWithAHandlerThatIgnoresCancellation: Stop returns within the
// shutdown timeout and the cancel grace, leaves the token pending for the
// reclaimer, and says so in the log.
func TestStopWithAHandlerThatIgnoresCancellation(t *testing.T) {
	t.Parallel()
	b := setup(t, redistest.Backends()[0], `
name: stuck
version: 1.0.0
steps:
  a: {handler: stuck}
`)
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	m := NewMux()
	m.HandleFunc("stuck", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
		started <- struct{}{}
		<-release // ignores ctx
		return dsat.Result{Output: task.Payload}, nil
	})
	cfg := b.fast("s1")
	cfg.ShutdownTimeout = 200 * time.Millisecond
	s, err := New(b.c, m, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(b.ctx); err != nil {
		t.Fatal(err)
	}
	id := b.submit(1, `{}`)[0]
	<-started
	t0 := time.Now()
	err = s.Stop(context.Background())
	d := time.Since(t0)
	close(release)
	if err == nil || d > cfg.ShutdownTimeout+cancelGrace+5*time.Second { // bounded, with room for a loaded machine
		t.Fatalf("Stop returned %v after %v", err, d)
	}
	if !strings.Contains(b.log.String(), "handler ignored its cancellation") || !strings.Contains(b.log.String(), id) {
		t.Fatalf("log does not name the abandoned handler:\n%s", tail(b.log.String(), 2000))
	}
	if st, _ := b.c.Get(b.ctx, id); dsat.Final(st.Status) {
		t.Fatalf("task %s is %s: the abandoned token must stay pending", id, st.Status)
	}
	time.Sleep(100 * time.Millisecond) // the released handler's goroutine exits (goleak)
}

// TestStartContextStopsTheSatellite: the context given to Start bounds the
// satellite's life; a Stop during that stop waits for it to finish.
func TestStartContextStopsTheSatellite(t *testing.T) {
	b := setup(t, redistest.Backends()[0], twoStep)
	m := NewMux()
	RegisterBuiltins(m, 0)
	m.HandleFunc("work", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
		return dsat.Result{Output: task.Payload}, nil
	})
	s, err := New(b.c, m, b.fast("s1"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(b.ctx)
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	b.wait(b.submit(3, `{}`), 10*time.Second)
	cancel()
	stopped := make(chan error)
	go func() { stopped <- s.Stop(context.Background()) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the satellite did not stop when its context ended")
	}
	if !strings.Contains(b.log.String(), "the satellite's context ended; stopping") {
		t.Fatalf("no stop on the context's end in the log:\n%s", tail(b.log.String(), 2000))
	}
	if n := b.rdb.Exists(b.ctx, b.c.Keys().Satellite("s1")).Val(); n != 0 {
		t.Fatal("the stopped satellite's heartbeat record is still there")
	}
}
