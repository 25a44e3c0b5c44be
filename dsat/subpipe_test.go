package dsat_test

import (
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const (
	subParentYAML = `
name: parent
version: 1.0.0
steps:
  a: {handler: echo, next: [sub]}
  sub: {pipeline: child, retries: 1, next: [z]}
  z: {handler: echo}
`
	subChildYAML = `
name: child
version: 1.0.0
steps:
  x: {handler: echo, next: [y]}
  y: {handler: echo, retries: 0}
`
)

// newSubHarness is a harness for the parent pipeline and one for the
// child, sharing one client that knows both.
func newSubHarness(t *testing.T, b redistest.Backend) (parent, child *harness) {
	t.Helper()
	return newSubHarnessOf(t, b, subParentYAML)
}

// newSubHarnessOf is newSubHarness with another parent pipeline (its
// sub-pipeline step names the child pipeline).
func newSubHarnessOf(t *testing.T, b redistest.Backend, parentYAML string) (parent, child *harness) {
	t.Helper()
	parent = newHarness(t, b, parentYAML)
	cp, err := dsat.ParsePipeline("child.yaml", []byte(subChildYAML))
	if err != nil {
		t.Fatal(err)
	}
	parent.c, err = dsat.NewClient(parent.rdb, dsat.Config{Now: parent.clock, FirehoseMaxLen: 1000}, parent.p, cp)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range cp.Order {
		if err := parent.rdb.XGroupCreateMkStream(parent.ctx, parent.c.Keys().Step(cp.Partition(0), s), s, "0").Err(); err != nil {
			t.Fatal(err)
		}
	}
	child = &harness{t: t, ctx: parent.ctx, rdb: parent.rdb, mini: parent.mini, real: parent.real, c: parent.c, p: cp,
		now: parent.now, worker: "sat2-w1", runs: map[string]int{}}
	child.clock() // child's clock is unused: the client reads the parent's
	return parent, child
}

// startChildren runs the sub-pipeline step's queued tokens as a worker
// does, and returns the outcomes.
func (h *harness) startChildren(step string) []dsat.Outcome {
	h.t.Helper()
	var out []dsat.Outcome
	for _, d := range h.read(step) {
		_, o, err := h.c.StartChild(h.ctx, d)
		if err != nil {
			h.t.Fatalf("start child: %v", err)
		}
		out = append(out, o)
	}
	return out
}

// childOf is the child task a step's latest token submitted.
func (h *harness) childOf(id, step string) string {
	h.t.Helper()
	c := h.state(id).Steps[step].Child
	if c == "" {
		h.t.Fatalf("step %s of %s names no child: %+v", step, id, h.state(id).Steps[step])
	}
	return c
}

func (h *harness) settle() int {
	h.t.Helper()
	n, err := h.c.SettleChildren(h.ctx, h.p.Partition(0))
	if err != nil {
		h.t.Fatalf("settle children: %v", err)
	}
	return n
}

// TestSubPipeline: a pipeline: step submits a child task with its input,
// records the parent in the child and the child in its SEND; the step
// ends with the child's result, or fails with its failure (and a retry of
// the step submits a new child); a cancelled parent cancels its child.
func TestSubPipeline(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		t.Run("ends with the child's result", func(t *testing.T) {
			ph, ch := newSubHarness(t, b)
			id := ph.submit(`{"n":1}`)
			ph.drain(nil) // a runs; sub's token waits for a worker
			eq(t, "start", ph.startChildren("sub"), []dsat.Outcome{dsat.Applied})
			kid := ph.childOf(id, "sub")
			st := ph.state(id)
			eq(t, "parked step", st.Steps["sub"].State+" "+st.Steps["sub"].Worker, "running ")
			cst := ch.state(kid)
			if cst.Parent == nil || cst.Parent.Task != id || cst.Parent.Step != "sub" {
				t.Fatalf("child parent %+v", cst.Parent)
			}
			if cst.Deadline != nil {
				t.Fatalf("a child of a step without a timeout of its own has a deadline: %v", cst.Deadline)
			}
			evs := ph.events(id)
			last := evs[len(evs)-1]
			eq(t, "SEND", last.Event+":"+last.Step, "SEND:sub")
			jsonEq(t, "SEND detail", last.Detail, `{"child":"`+kid+`","pipeline":"child"}`)
			eq(t, "nothing to settle yet", ph.settle(), 0)
			ch.drain(nil)
			eq(t, "child", ch.state(kid).Status, dsat.StatusSucceeded)
			eq(t, "settled", ph.settle(), 1)
			eq(t, "settled again", ph.settle(), 0)
			ph.drain(nil)
			st = ph.state(id)
			eq(t, "status", st.Status, dsat.StatusSucceeded)
			eq(t, "child named", st.Steps["sub"].Child, kid)
			jsonEq(t, "result", st.Result,
				`{"step":"z","in":{"step":"y","in":{"step":"x","in":{"step":"a","in":{"n":1}}}}}`)
			ph.checkInvariants(id)
			ch.checkInvariants(kid)
			ph.streamsEmpty()
			ch.streamsEmpty()
			if n := ph.rdb.ZCard(ph.ctx, ph.c.Keys().Children(ph.p.Partition(0))).Val(); n != 0 {
				t.Fatalf("children set holds %d", n)
			}
		})
		t.Run("a failed child fails the step, a retry submits a new one", func(t *testing.T) {
			ph, ch := newSubHarness(t, b)
			id := ph.submit(`{}`)
			ph.drain(nil)
			ph.startChildren("sub")
			kid1 := ph.childOf(id, "sub")
			ch.drain(map[string]handlerFunc{"y": failB})
			eq(t, "child 1", ch.state(kid1).Status, dsat.StatusFailed)
			eq(t, "settled", ph.settle(), 1)
			st := ph.state(id)
			eq(t, "step", st.Steps["sub"].State, "retrying")
			if !strings.Contains(st.Steps["sub"].Error, "child task "+kid1+" failed: y: b broke") {
				t.Fatalf("step error %q", st.Steps["sub"].Error)
			}
			ph.drain(nil) // the retry comes due
			ph.startChildren("sub")
			kid2 := ph.childOf(id, "sub")
			if kid2 == kid1 {
				t.Fatal("the retry reused the failed child")
			}
			ch.drain(map[string]handlerFunc{"y": failB})
			ph.settle()
			st = ph.state(id)
			eq(t, "status", st.Status, dsat.StatusFailed)
			eq(t, "error", st.Error, "sub: child task "+kid2+" failed: y: b broke")
			ph.checkInvariants(id)
			// A retry of the task re-drives the step: a third child.
			if _, err := ph.c.Retry(ph.ctx, id); err != nil {
				t.Fatal(err)
			}
			ph.startChildren("sub")
			kid3 := ph.childOf(id, "sub")
			ch.drain(nil)
			ph.settle()
			ph.drain(nil)
			eq(t, "status after retry", ph.state(id).Status, dsat.StatusSucceeded)
			if kid3 == kid2 || kid3 == kid1 {
				t.Fatal("the task's retry reused a child")
			}
			ph.checkInvariants(id)
		})
		t.Run("the step's timeout is the child's deadline", func(t *testing.T) {
			ph, ch := newSubHarnessOf(t, b, strings.Replace(subParentYAML, "{pipeline: child, retries: 1,", "{pipeline: child, retries: 1, timeout: 1m,", 1))
			id := ph.submit(`{}`)
			ph.drain(nil)
			handoff := ph.clock()
			ph.startChildren("sub")
			kid := ph.childOf(id, "sub")
			if dl := ch.state(kid).Deadline; dl == nil || !dl.Time.Equal(handoff.Add(time.Minute).Truncate(time.Millisecond)) {
				t.Fatalf("child deadline %v, want the hand-off %v + 1m", dl, handoff)
			}
			ph.advance(30 * time.Second)
			if n, _, err := ph.c.CancelOverdue(ph.ctx, ch.p.Partition(0), 100); n != 0 || err != nil {
				t.Fatalf("cancelled %d (%v) before the timeout", n, err)
			}
			ph.advance(31 * time.Second)
			if n, _, err := ph.c.CancelOverdue(ph.ctx, ch.p.Partition(0), 100); n != 1 || err != nil {
				t.Fatalf("cancelled %d (%v) past the timeout, want the child", n, err)
			}
			eq(t, "child", ch.state(kid).Status, dsat.StatusCancelled)
			eq(t, "settled", ph.settle(), 1)
			st := ph.state(id)
			eq(t, "step", st.Steps["sub"].State, "retrying")
			eq(t, "step error", st.Steps["sub"].Error, "child task "+kid+" cancelled: it ran past the step's timeout")
			// The retry hands off a new child with a deadline of its own,
			// which ends in time this once.
			ph.advance(time.Hour)
			ph.drain(nil)
			ph.startChildren("sub")
			kid2 := ph.childOf(id, "sub")
			if kid2 == kid {
				t.Fatal("the retry reused the cancelled child")
			}
			ch.drain(nil)
			ph.settle()
			ph.drain(nil)
			eq(t, "status", ph.state(id).Status, dsat.StatusSucceeded)
			ph.checkInvariants(id)
			ch.checkInvariants(kid)
		})
		t.Run("the child inherits the parent's priority", func(t *testing.T) {
			ph, ch := newSubHarness(t, b)
			for _, pr := range []dsat.Priority{dsat.PriorityHigh, dsat.PriorityLow, dsat.PriorityNormal} {
				s, err := ph.c.Submit(ph.ctx, "parent", []byte(`{}`), dsat.SubmitOptions{Priority: pr})
				if err != nil {
					t.Fatal(err)
				}
				ph.drain(nil)
				ph.startChildren("sub")
				kid := ph.childOf(s.ID, "sub")
				eq(t, "child priority", ch.state(kid).Priority, pr)
				levels := 0
				ch.drain(map[string]handlerFunc{"x": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
					if d.Priority != pr {
						t.Fatalf("the child's token waited at %s, its parent is %s", d.Priority, pr)
					}
					levels++
					return pass(d)
				}})
				eq(t, "child tokens checked", levels, 1)
				ph.settle()
				ph.drain(nil)
				eq(t, "status", ph.state(s.ID).Status, dsat.StatusSucceeded)
			}
		})
		t.Run("cancel of the parent cancels the child", func(t *testing.T) {
			ph, ch := newSubHarness(t, b)
			id := ph.submit(`{}`)
			ph.drain(nil)
			ph.startChildren("sub")
			kid := ph.childOf(id, "sub")
			if err := ph.c.Cancel(ph.ctx, id, "test"); err != nil {
				t.Fatal(err)
			}
			eq(t, "settled", ph.settle(), 0)
			eq(t, "child", ch.state(kid).Status, dsat.StatusCancelled)
			if n := ph.rdb.ZCard(ph.ctx, ph.c.Keys().Children(ph.p.Partition(0))).Val(); n != 0 {
				t.Fatalf("children set holds %d", n)
			}
			ch.checkInvariants(kid)
			ph.checkInvariants(id)
		})
		t.Run("the entry step, not begun: the task becomes running", func(t *testing.T) {
			ph, ch := newSubHarness(t, b)
			entry, err := dsat.ParsePipeline("entry.yaml", []byte("name: entry\nversion: 1.0.0\nsteps:\n  sub: {pipeline: child}\n"))
			if err != nil {
				t.Fatal(err)
			}
			if ph.c, err = dsat.NewClient(ph.rdb, dsat.Config{Now: ph.clock, FirehoseMaxLen: 1000}, entry, ch.p); err != nil {
				t.Fatal(err)
			}
			ch.c, ph.p = ph.c, entry
			if err := ph.rdb.XGroupCreateMkStream(ph.ctx, ph.c.Keys().Step(entry.Partition(0), "sub"), "sub", "0").Err(); err != nil {
				t.Fatal(err)
			}
			id := ph.submit(`{"e":1}`)
			eq(t, "start", ph.startChildren("sub"), []dsat.Outcome{dsat.Applied})
			eq(t, "status", ph.state(id).Status, dsat.StatusRunning)
			ch.drain(nil)
			eq(t, "settled", ph.settle(), 1)
			st := ph.state(id)
			eq(t, "status", st.Status, dsat.StatusSucceeded)
			jsonEq(t, "result", st.Result, `{"step":"y","in":{"step":"x","in":{"e":1}}}`)
			ph.checkInvariants(id)
			// The task index followed it (pending, running, succeeded).
			page, err := ph.c.Search(ph.ctx, dsat.TaskQuery{Pipeline: "entry", Status: []string{dsat.StatusSucceeded}})
			if err != nil || len(page.Items) != 1 {
				t.Fatalf("index: %+v %v", page, err)
			}
		})
		t.Run("a crash at any point submits one child and ends the step once", func(t *testing.T) {
			ph, ch := newSubHarness(t, b)
			id := ph.submit(`{}`)
			ph.drain(nil)
			ds := ph.read("sub")
			if len(ds) != 1 {
				t.Fatalf("%d deliveries", len(ds))
			}
			// The token is run twice (a reclaim after a crash anywhere in
			// StartChild): one child, parked once.
			kid, o1, err := ph.c.StartChild(ph.ctx, ds[0])
			if err != nil {
				t.Fatal(err)
			}
			kid2, o2, err := ph.c.StartChild(ph.ctx, ds[0])
			if err != nil {
				t.Fatal(err)
			}
			eq(t, "outcomes", []dsat.Outcome{o1, o2}, []dsat.Outcome{dsat.Applied, dsat.AlreadyApplied})
			eq(t, "same child", kid2, kid)
			ch.drain(nil)
			eq(t, "child runs", ch.runs, map[string]int{"x": 1, "y": 1})
			// A sweeper that dies after ending the step and before removing
			// it from the set: the next sweep changes nothing more.
			n, err := dsat.SettleChildrenNoForgetForTest(ph.ctx, ph.c, ph.p.Partition(0))
			if err != nil || n != 1 {
				t.Fatalf("settle: %d %v", n, err)
			}
			seq := ph.state(id).Seq
			eq(t, "second sweep", ph.settle(), 0)
			eq(t, "seq unchanged", ph.state(id).Seq, seq)
			ph.drain(nil)
			eq(t, "status", ph.state(id).Status, dsat.StatusSucceeded)
			eq(t, "z runs", ph.runs["z"], 1)
			ph.checkInvariants(id)
		})
	})
}
