package tracing

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"strconv"

	"go.opentelemetry.io/otel/trace"
)

// StepSpanID is the span id of a step attempt: derived from the task id,
// the token id and the attempt, so whoever knows them (a join's worker,
// for the branches that fed it) can link the span.
func StepSpanID(task, token string, attempt int) trace.SpanID {
	h := sha256.Sum256([]byte(task + "\x00" + token + "\x00" + strconv.Itoa(attempt)))
	var id trace.SpanID
	copy(id[:], h[:8])
	if !id.IsValid() {
		id[7] = 1
	}
	return id
}

type spanIDKey struct{}

// WithSpanID makes the next span started with ctx get id (with a provider
// that uses IDGenerator).
func WithSpanID(ctx context.Context, id trace.SpanID) context.Context {
	return context.WithValue(ctx, spanIDKey{}, id)
}

// IDGenerator makes random ids, except a span id set on the context with
// WithSpanID. FromEnv's provider uses it; give it to a provider of your
// own (sdktrace.WithIDGenerator) for the join links to resolve.
type IDGenerator struct{}

// NewIDs returns a random trace id and the context's span id, or a random
// one.
func (g IDGenerator) NewIDs(ctx context.Context) (trace.TraceID, trace.SpanID) {
	var tid trace.TraceID
	for !tid.IsValid() {
		_, _ = rand.Read(tid[:])
	}
	return tid, g.NewSpanID(ctx, tid)
}

// NewSpanID returns the context's span id, or a random one.
func (IDGenerator) NewSpanID(ctx context.Context, _ trace.TraceID) trace.SpanID {
	if id, ok := ctx.Value(spanIDKey{}).(trace.SpanID); ok && id.IsValid() {
		return id
	}
	var sid trace.SpanID
	for !sid.IsValid() {
		_, _ = rand.Read(sid[:])
	}
	return sid
}
