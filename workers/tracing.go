package workers

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/tracing"
)

// tracerName is the instrumentation scope of the step spans.
const tracerName = "github.com/dsat-dev/dsat/workers"

// Span attributes of a step attempt.
const (
	attrTask    = attribute.Key("dsat.task.id")
	attrPipe    = attribute.Key("dsat.pipeline")
	attrStep    = attribute.Key("dsat.step")
	attrAttempt = attribute.Key("dsat.attempt")
	attrOutcome = attribute.Key("dsat.outcome")
	attrWait    = attribute.Key("dsat.wait_ms")
)

// startSpan starts the span of one step attempt (nil when tracing is
// off), a child of the token's trace context, with the span id
// tracing.StepSpanID gives, and returns ctx carrying it. A join's span
// links the spans of the branches that fed it.
func (r *stepRunner) startSpan(ctx context.Context, j *job, started time.Time) (context.Context, trace.Span) {
	t := r.s.tracer
	if t == nil {
		return ctx, nil
	}
	d := j.d
	wait := started.UnixMilli() - d.TS
	if wait < 0 {
		wait = 0
	}
	opts := []trace.SpanStartOption{trace.WithSpanKind(trace.SpanKindConsumer), trace.WithTimestamp(started),
		trace.WithAttributes(attrTask.String(d.Task), attrPipe.String(r.p.Name), attrStep.String(r.step.Name),
			attrAttempt.Int(d.Attempt), attrWait.Int64(wait))}
	parent := tracing.Parent(ctx, d.Trace)
	if r.step.Join {
		opts = append(opts, trace.WithLinks(r.branchLinks(ctx, d, trace.SpanContextFromContext(parent))...))
	}
	ctx = tracing.WithSpanID(parent, tracing.StepSpanID(d.Task, d.Token, d.Attempt))
	return t.Start(ctx, r.p.Name+"/"+r.step.Name, opts...)
}

// branchLinks links the span of the latest attempt of each predecessor
// of the join that ran (read from the task's state: one Redis call, only
// for a join with tracing on).
func (r *stepRunner) branchLinks(ctx context.Context, d dsat.Delivery, parent trace.SpanContext) []trace.Link {
	if !parent.IsValid() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	st, err := r.s.c.Get(ctx, d.Task)
	if err != nil {
		r.s.logLimited(r.name()+"/links", r.log.Warn().Err(err).Str("task", d.Task), "read a join's branches for its span links")
		return nil
	}
	var links []trace.Link
	for _, pred := range r.step.Preds {
		ps, ok := st.Steps[pred]
		if !ok || ps.Token == "" || ps.Attempts < 1 {
			continue
		}
		sc := trace.NewSpanContext(trace.SpanContextConfig{TraceID: parent.TraceID(),
			SpanID: tracing.StepSpanID(d.Task, ps.Token, ps.Attempts), TraceFlags: parent.TraceFlags(), Remote: true})
		links = append(links, trace.Link{SpanContext: sc, Attributes: []attribute.KeyValue{attrStep.String(pred)}})
	}
	return links
}

// endSpan records the attempt's outcome (and error) and ends the span.
func endSpan(span trace.Span, outcome, errText string) {
	if span == nil {
		return
	}
	span.SetAttributes(attrOutcome.String(outcome))
	if outcome != "ok" && outcome != "snooze" {
		span.SetStatus(codes.Error, errText)
	}
	span.End()
}
