package workers

import (
	"context"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestJoinAnyCancelsRunningHandler: the first branch to reach a join: any
// fires it; the other branch's handler, still running, sees its context
// cancelled within a second, and what it returns changes nothing.
func TestJoinAnyCancelsRunningHandler(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: race
version: 1.0.0
steps:
  a: {handler: echo, next: [fast, slow]}
  fast: {handler: echo, next: [j]}
  slow: {handler: slow, timeout: 30s, next: [j]}
  j: {handler: echo, join: any}
`)
		stopped := make(chan time.Time, 1)
		m := NewMux()
		m.HandleFunc("echo", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			return dsat.Result{Output: task.Payload}, nil
		})
		started := make(chan struct{})
		m.HandleFunc("slow", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			close(started)
			<-ctx.Done()
			stopped <- time.Now()
			return dsat.Result{}, ctx.Err()
		})
		cfg := b.fast("s1")
		cfg.WatchInterval = 0 // the default, as users get it
		b.start(m, cfg)
		id := b.submit(1, `{"x":1}`)[0]
		<-started
		st := b.wait([]string{id}, 10*time.Second)[0]
		firedAt := time.Now()
		if st.Status != dsat.StatusSucceeded || string(st.Result) != `{"fast":{"x":1}}` {
			t.Fatalf("state %s %s", st.Status, st.Result)
		}
		select {
		case got := <-stopped:
			if d := got.Sub(firedAt); d > time.Second {
				t.Fatalf("the slow handler saw the cancel after %s", d)
			}
		case <-time.After(3 * time.Second):
			t.Fatal("the slow handler never saw the cancel")
		}
		time.Sleep(200 * time.Millisecond)
		b.streamsEmpty()
		c := b.eventCounts(id)
		if c["ERROR"] != 0 || c["DEAD"] != 0 {
			t.Fatalf("events %v", c)
		}
		got, err := b.c.Get(b.ctx, id)
		if err != nil || got.Steps["slow"].State != "cancelled" {
			t.Fatalf("slow: %+v %v", got, err)
		}
	})
}
