package workers

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
	"github.com/dsat-dev/dsat/tracing"
)

const tracedYAML = `
name: traced
version: 1.0.0
steps:
  a: {handler: h, next: [b, c]}
  b: {handler: flaky, next: [j], backoff: {initial: 10ms, max: 10ms}}
  c: {handler: h, route_by: r, routes: {x: [d], default: [e]}}
  d: {handler: h, next: [j]}
  e: {handler: h, next: [j]}
  j: {handler: h, join: true}
`

func spanAttr(s sdktrace.ReadOnlySpan, k attribute.Key) attribute.Value {
	for _, kv := range s.Attributes() {
		if kv.Key == k {
			return kv.Value
		}
	}
	return attribute.Value{}
}

// TestStepSpans: with a tracer provider, every step attempt of a task with
// a fan-out, a switch, a retry and a join is a span in the task's trace, a
// child of the submission's span, with its attributes; the retry is a new
// span; the join's span links the spans of the branches that fed it; a
// handler sees its own span as its Trace.
func TestStepSpans(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, tracedYAML)
		exp := tracetest.NewInMemoryExporter()
		tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp), sdktrace.WithIDGenerator(tracing.IDGenerator{}))
		defer func() { _ = tp.Shutdown(context.Background()) }()
		var mu sync.Mutex
		seen := map[string]string{} // step/attempt -> the handler's Trace
		m := NewMux()
		note := func(task *dsat.Task) {
			mu.Lock()
			seen[task.Step+"/"+string(rune('0'+task.Attempt))] = task.Trace
			mu.Unlock()
		}
		m.HandleFunc("h", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			note(task)
			return dsat.Result{Output: []byte(`{"r":"x"}`)}, nil
		})
		m.HandleFunc("flaky", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			note(task)
			if task.Attempt == 1 {
				return dsat.Result{}, errors.New("first try fails")
			}
			return dsat.Result{Output: []byte(`{}`)}, nil
		})
		cfg := b.fast("s1")
		cfg.TracerProvider = tp
		b.start(m, cfg)

		// The submission's span, as the API makes it.
		_, root := tp.Tracer("test").Start(context.Background(), "submit traced")
		s, err := b.c.Submit(b.ctx, "traced", []byte(`{}`), dsat.SubmitOptions{Trace: tracing.Traceparent(root.SpanContext())})
		if err != nil {
			t.Fatal(err)
		}
		root.End()
		if st := b.wait([]string{s.ID}, 10*time.Second)[0]; st.Status != dsat.StatusSucceeded {
			t.Fatalf("task %+v", st)
		}
		// The last step's span ends just after its script made the task
		// final: wait for every span to be exported.
		want := map[string]string{"a/1": "ok", "b/1": "error", "b/2": "ok", "c/1": "ok", "d/1": "ok", "j/1": "ok"}
		spans := exp.GetSpans().Snapshots()
		for deadline := time.Now().Add(5 * time.Second); len(spans) < len(want)+1 && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
			spans = exp.GetSpans().Snapshots()
		}
		byKey := map[string]sdktrace.ReadOnlySpan{}
		for _, sp := range spans {
			if sp.Name() == "submit traced" {
				continue
			}
			step := spanAttr(sp, attrStep).AsString()
			key := step + "/" + string(rune('0'+spanAttr(sp, attrAttempt).AsInt64()))
			if _, dup := byKey[key]; dup {
				t.Fatalf("two spans for %s", key)
			}
			byKey[key] = sp
			if sp.Parent().SpanID() != root.SpanContext().SpanID() || sp.SpanContext().TraceID() != root.SpanContext().TraceID() {
				t.Errorf("%s: parent %v, want the submission's span %v", key, sp.Parent(), root.SpanContext())
			}
			if spanAttr(sp, attrTask).AsString() != s.ID || spanAttr(sp, attrPipe).AsString() != "traced" ||
				sp.Name() != "traced/"+step || spanAttr(sp, attrWait).Type() != attribute.INT64 {
				t.Errorf("%s: name %q, attributes %v", key, sp.Name(), sp.Attributes())
			}
			mu.Lock()
			handlerTrace := seen[key]
			mu.Unlock()
			if handlerTrace != tracing.Traceparent(sp.SpanContext()) {
				t.Errorf("%s: the handler's Trace %q is not its span %v", key, handlerTrace, sp.SpanContext())
			}
		}
		if len(byKey) != len(want) {
			t.Fatalf("spans %v, want %v", keys(byKey), want)
		}
		for k, outcome := range want {
			if got := spanAttr(byKey[k], attrOutcome).AsString(); got != outcome {
				t.Errorf("%s: outcome %q, want %q", k, got, outcome)
			}
		}
		links := map[string]bool{}
		for _, l := range byKey["j/1"].Links() {
			links[l.SpanContext.SpanID().String()] = true
		}
		if len(links) != 2 || !links[byKey["b/2"].SpanContext().SpanID().String()] || !links[byKey["d/1"].SpanContext().SpanID().String()] {
			t.Fatalf("join links %v, want the spans of b (attempt 2) and d", byKey["j/1"].Links())
		}
	})
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
