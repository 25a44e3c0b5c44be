package workers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const (
	subParent = `
name: parent
version: 1.0.0
steps:
  a: {handler: echo, next: [sub]}
  sub: {pipeline: child, retries: 0, next: [z]}
  z: {handler: echo}
`
	subChild = `
name: child
version: 1.0.0
steps:
  x: {handler: kid, retries: 0}
`
)

// setupSub is setup for a parent pipeline whose client also knows the
// child pipeline.
func setupSub(t *testing.T, be redistest.Backend, parent string) *bundle {
	t.Helper()
	b := setup(t, be, parent)
	child, err := dsat.ParsePipeline("child.yaml", []byte(subChild))
	if err != nil {
		t.Fatal(err)
	}
	if b.c, err = dsat.NewClient(b.rdb, dsat.Config{}, b.p, child); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestSubPipelineInASatellite: one satellite runs the parent pipeline and
// its child: the sub-pipeline step submits the child, its time keeping
// ends the step with the child's result (or its failure), and a parent
// cancelled while its child runs has the child cancelled.
func TestSubPipelineInASatellite(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setupSub(t, be, subParent)
		m := NewMux()
		RegisterBuiltins(m, 0)
		m.HandleFunc("kid", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			switch {
			case strings.Contains(string(task.Payload), "fail"):
				return dsat.Result{}, errors.New("kid broke")
			case strings.Contains(string(task.Payload), "hang"):
				<-ctx.Done()
				return dsat.Result{}, ctx.Err()
			}
			return dsat.Result{Output: []byte(`{"kid":true}`)}, nil
		})
		b.start(m, b.fast("s1"))
		ids := b.submit(1, `{"ok":1}`)
		ids = append(ids, b.submit(1, `{"fail":1}`)...)
		hang := b.submit(1, `{"hang":1}`)[0]
		states := b.wait(ids, 20*time.Second)
		if st := states[0]; st.Status != dsat.StatusSucceeded || string(st.Result) != `{"kid":true}` || st.Steps["sub"].Child == "" {
			t.Fatalf("ok: %s %s %+v", st.Status, st.Result, st.Steps["sub"])
		}
		if st := states[1]; st.Status != dsat.StatusFailed || !strings.Contains(st.Error, "kid broke") {
			t.Fatalf("fail: %s %q", st.Status, st.Error)
		}
		// The hanging child runs; cancel its parent.
		deadline := time.Now().Add(10 * time.Second)
		var kid string
		for kid == "" && time.Now().Before(deadline) {
			st, err := b.c.Get(b.ctx, hang)
			if err != nil {
				t.Fatal(err)
			}
			kid = st.Steps["sub"].Child
			time.Sleep(20 * time.Millisecond)
		}
		if kid == "" {
			t.Fatal("no child for the hanging task")
		}
		if err := b.c.Cancel(b.ctx, hang, "test"); err != nil {
			t.Fatal(err)
		}
		if st := b.wait([]string{kid}, 10*time.Second)[0]; st.Status != dsat.StatusCancelled || st.Parent == nil || st.Parent.Task != hang {
			t.Fatalf("child of the cancelled parent: %s %+v", st.Status, st.Parent)
		}
	})
}

// TestSubPipelineTimeoutInASatellite: a sub-pipeline step with a timeout
// of its own bounds its child: a child that hangs is cancelled at the
// timeout (its handler sees its context end) and the parent's step fails
// with that reason.
func TestSubPipelineTimeoutInASatellite(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setupSub(t, be, strings.Replace(subParent, "{pipeline: child, retries: 0,", "{pipeline: child, retries: 0, timeout: 1s,", 1))
		m := NewMux()
		RegisterBuiltins(m, 0)
		stopped := make(chan struct{}, 1)
		m.HandleFunc("kid", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			<-ctx.Done()
			stopped <- struct{}{}
			return dsat.Result{}, ctx.Err()
		})
		b.start(m, b.fast("s1"))
		id := b.submit(1, `{}`)[0]
		st := b.wait([]string{id}, 20*time.Second)[0]
		kid := st.Steps["sub"].Child
		if st.Status != dsat.StatusFailed || kid == "" || st.Error != "sub: child task "+kid+" cancelled: it ran past the step's timeout" {
			t.Fatalf("parent: %s %q %+v", st.Status, st.Error, st.Steps["sub"])
		}
		kst, err := b.c.Get(b.ctx, kid)
		if err != nil {
			t.Fatal(err)
		}
		if kst.Status != dsat.StatusCancelled || kst.Deadline == nil {
			t.Fatalf("child: %s deadline %v", kst.Status, kst.Deadline)
		}
		select {
		case <-stopped:
		case <-time.After(5 * time.Second):
			t.Fatal("the child's handler did not see its context end")
		}
	})
}

// TestOnFailureInASatellite: a satellite runs the failure handler of a
// task that fails, once, with the failure; the task ends failed after it.
func TestOnFailureInASatellite(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, "name: onf\nversion: 1.0.0\nsteps:\n  a: {handler: fail, with: {rate: 1}, retries: 0}\n  alert: {handler: alert}\non_failure: alert\n")
		m := NewMux()
		RegisterBuiltins(m, 0)
		inputs := make(chan string, 4)
		m.HandleFunc("alert", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			inputs <- string(task.Payload)
			return dsat.Result{Output: []byte(`{}`)}, nil
		})
		b.start(m, b.fast("s1"))
		id := b.submit(1, `{"n":1}`)[0]
		st := b.wait([]string{id}, 10*time.Second)[0]
		if st.Status != dsat.StatusFailed || st.Steps["alert"].State != "done" || !strings.HasPrefix(st.Error, "a: ") {
			t.Fatalf("%s %q %+v", st.Status, st.Error, st.Steps)
		}
		in := <-inputs
		if !strings.Contains(in, `"task":"`+id+`"`) || !strings.Contains(in, `"step":"a"`) || !strings.Contains(in, `"input":{"n":1}`) {
			t.Fatalf("handler input %s", in)
		}
		if n := b.eventCounts(id); n["DEAD"] != 1 || n["SEND"] != 1 {
			t.Fatalf("events %v", n)
		}
		if len(inputs) != 0 {
			t.Fatal("the failure handler ran twice")
		}
	})
}
