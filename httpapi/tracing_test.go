package httpapi

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
	"github.com/dsat-dev/dsat/tracing"
)

// TestSubmitSpans: with a tracer provider, a submission is a span — a
// child of the caller's Traceparent, else a new trace — and the task's
// tokens carry that span's context; a bad Traceparent is still a 400.
func TestSubmitSpans(t *testing.T) {
	t.Parallel()
	exp := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(exp))
	defer func() { _ = tp.Shutdown(context.Background()) }()
	e := newEnv(t, redistest.Backends()[0], func(c *Config) { c.TracerProvider = tp })
	const caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

	r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{}`, "Traceparent", caller)
	if r.status != 202 {
		t.Fatalf("submit: %d %s", r.status, r.raw)
	}
	id := r.body["id"].(string)
	spans := exp.GetSpans().Snapshots()
	if len(spans) != 1 {
		t.Fatalf("%d spans", len(spans))
	}
	sp := spans[0]
	if sp.Name() != "submit demo" || sp.Parent().SpanID().String() != "00f067aa0ba902b7" ||
		sp.SpanContext().TraceID().String() != "4bf92f3577b34da6a3ce929d0e0e4736" {
		t.Fatalf("span %q parent %v trace %v", sp.Name(), sp.Parent(), sp.SpanContext().TraceID())
	}
	found := false
	for _, kv := range sp.Attributes() {
		found = found || (kv.Key == "dsat.task.id" && kv.Value.AsString() == id)
	}
	if !found {
		t.Fatalf("attributes %v lack dsat.task.id %s", sp.Attributes(), id)
	}
	tid, _ := dsat.ParseTaskID(id)
	msgs := e.rdb.XRange(context.Background(), e.c.Keys().Step(tid.Partition, "a"), "-", "+").Val()
	if len(msgs) != 1 || msgs[0].Values["trace"] != tracing.Traceparent(sp.SpanContext()) {
		t.Fatalf("the entry token's trace %v, want the submission's span %s", msgs, tracing.Traceparent(sp.SpanContext()))
	}

	// No Traceparent: the submission starts the trace. A batch is one span.
	exp.Reset()
	if r := e.do("POST", "/v1/pipelines/demo/batch", "application/json", `[{},{}]`); r.status != 202 {
		t.Fatalf("batch: %d %s", r.status, r.raw)
	}
	if spans := exp.GetSpans().Snapshots(); len(spans) != 1 || spans[0].Parent().IsValid() {
		t.Fatalf("batch spans %v", spans)
	}

	// A bad Traceparent: 400, no span.
	exp.Reset()
	if r := e.do("POST", "/v1/pipelines/demo/tasks", "application/json", `{}`, "Traceparent", "00-abc"); r.status != 400 {
		t.Fatalf("bad traceparent: %d %s", r.status, r.raw)
	}
	if n := len(exp.GetSpans()); n != 0 {
		t.Fatalf("%d spans for a refused submission", n)
	}
}
