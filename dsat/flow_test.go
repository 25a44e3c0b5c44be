package dsat_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestPauseResume: pauses are listed, per pipeline or step; a step is
// paused with its pipeline; resuming the step of a paused pipeline leaves
// it paused; unknown names are errors.
func TestPauseResume(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		name := h.p.Name
		if err := h.c.Pause(h.ctx, name, "b"); err != nil {
			t.Fatal(err)
		}
		if err := h.c.Pause(h.ctx, name, "b"); err != nil { // twice is harmless
			t.Fatal(err)
		}
		p, err := h.c.ListPaused(h.ctx)
		if err != nil || len(p) != 1 || !p.Step(name, "b") || p.Step(name, "a") {
			t.Fatalf("paused %v %v", p, err)
		}
		if err := h.c.Pause(h.ctx, name, ""); err != nil {
			t.Fatal(err)
		}
		if err := h.c.Resume(h.ctx, name, "b"); err != nil {
			t.Fatal(err)
		}
		p, _ = h.c.ListPaused(h.ctx)
		if !p.Step(name, "a") || !p.Step(name, "b") {
			t.Fatalf("with the pipeline paused, every step is: %v", p)
		}
		if err := h.c.Resume(h.ctx, name, ""); err != nil {
			t.Fatal(err)
		}
		if p, _ = h.c.ListPaused(h.ctx); len(p) != 0 {
			t.Fatalf("after resuming: %v", p)
		}
		if err := h.c.Pause(h.ctx, "nope", ""); !errors.Is(err, dsat.ErrPipelineNotFound) {
			t.Fatalf("unknown pipeline: %v", err)
		}
		if err := h.c.Pause(h.ctx, name, "zz"); !errors.Is(err, dsat.ErrStepNotFound) {
			t.Fatalf("unknown step: %v", err)
		}
	})
}

// TestEntryBacklogFull: a pipeline whose entry step has a max_backlog
// refuses submissions (ErrBacklogFull) while that many tokens wait, also
// within one burst; delayed submissions are not refused; once the step
// drains, submissions pass again.
func TestEntryBacklogFull(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, `
name: bp
version: 1.0.0
steps:
  a: {handler: echo, next: [b], max_backlog: 3}
  b: {handler: echo}
`)
		h.submit(`{}`)
		// A batch that would take the backlog past max_backlog is refused;
		// one that fits is taken.
		if _, err := h.c.SubmitBatch(h.ctx, "bp", [][]byte{[]byte(`{}`), []byte(`{}`), []byte(`{}`)}); !errors.Is(err, dsat.ErrBacklogFull) {
			t.Fatalf("a batch past the limit: %v, want ErrBacklogFull", err)
		}
		if _, err := h.c.SubmitBatch(h.ctx, "bp", [][]byte{[]byte(`{}`), []byte(`{}`)}); err != nil {
			t.Fatalf("a batch that fits: %v", err)
		}
		if _, err := h.c.Submit(h.ctx, "bp", []byte(`{}`), dsat.SubmitOptions{}); !errors.Is(err, dsat.ErrBacklogFull) {
			t.Fatalf("fourth submission: %v, want ErrBacklogFull", err)
		}
		if _, err := h.c.SubmitBatch(h.ctx, "bp", [][]byte{[]byte(`{}`)}); !errors.Is(err, dsat.ErrBacklogFull) {
			t.Fatalf("batch: %v, want ErrBacklogFull", err)
		}
		if _, err := h.c.Submit(h.ctx, "bp", []byte(`{}`), dsat.SubmitOptions{RunAt: h.now.Add(time.Hour)}); err != nil {
			t.Fatalf("delayed submission: %v", err)
		}
		h.read("a")                        // the tokens leave the backlog once read
		time.Sleep(120 * time.Millisecond) // past the submissions' backlog cache
		if _, err := h.c.Submit(h.ctx, "bp", []byte(`{}`), dsat.SubmitOptions{}); err != nil {
			t.Fatalf("after the step read its tokens: %v", err)
		}
	})
}
