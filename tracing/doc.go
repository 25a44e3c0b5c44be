// Package tracing connects dsat to OpenTelemetry. FromEnv builds a tracer
// provider from the standard OTEL_* environment variables (off when no
// OTLP endpoint is set); its exporter speaks OTLP over HTTP with JSON
// encoding, which every OTLP/HTTP receiver accepts, so the binary carries no
// gRPC or protobuf stack.
//
// The spans dsat makes: one per submission (continuing the caller's
// Traceparent, else starting the task's trace), whose context every token
// of the task carries, and one per step attempt, a child of it. A step
// attempt's span id is derived from the task, token and attempt
// (StepSpanID, through the provider's IDGenerator), so a join's span can
// link the spans of the branches that fed it without storing them.
package tracing
