package httpapi

import (
	"net/http"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/tracing"
)

// submitSpan starts the span of a submission when tracing is on (nil
// otherwise): a child of the caller's Traceparent (checked first: a bad
// one is the same 400 as without tracing), else the root of a new trace.
// opts.Trace becomes the span's context, so every token of the task (or
// of every task of a batch) carries it and the step spans are its
// children.
func (a *API) submitSpan(r *http.Request, pipeline string, opts *dsat.SubmitOptions, n int) (trace.Span, error) {
	if a.tracer == nil {
		return nil, nil
	}
	if err := dsat.CheckTrace(opts.Trace); err != nil {
		return nil, err
	}
	ctx := tracing.Parent(r.Context(), opts.Trace)
	_, span := a.tracer.Start(ctx, "submit "+pipeline, trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("dsat.pipeline", pipeline), attribute.Int("dsat.tasks", n)))
	opts.Trace = tracing.Traceparent(span.SpanContext())
	return span, nil
}

// endSubmitSpan records the submitted task (one task) or the error and
// ends the span.
func endSubmitSpan(span trace.Span, task string, err error) {
	if span == nil {
		return
	}
	if task != "" {
		span.SetAttributes(attribute.String("dsat.task.id", task))
	}
	if err != nil {
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}
