// Package httpapi is dsat's HTTP API on chi: submitting tasks, reading their
// state, following them live over server-sent events, control (cancel,
// retry, dead letters), introspection (pipelines with per-step load,
// satellites) and operations (/healthz, /readyz, /metrics, /openapi.json).
//
// # Errors
//
// Every error is application/problem+json (RFC 9457) with a detail that
// says what to fix. Bad input is a 4xx and stores nothing; a Redis outage is
// a 503, never a 500.
//
// # Live feeds
//
// GET /v1/tasks/{id}/events and GET /v1/events?pipeline= are server-sent
// event streams: id: is the event's stream id (for a pipeline with several
// partitions the firehose id is a cursor: one stream id per partition,
// joined by commas), event: the event name and data: one line of JSON. A
// client that reconnects with Last-Event-ID gets every event after it, with
// no duplicate; an id older than what is kept first gets a reset event. The
// per-task feed replays from the task's first event and ends after its
// current final event (a task retried after it died goes on past its old
// DEAD); a resume at a finished task's final event gets a reset event with
// its state and the end, one past its last event a 400. The firehose
// starts at new events. Comment heartbeats keep
// proxies from closing idle streams.
//
// One Redis reader per partition firehose per process fans events out to
// every stream in memory (started by the first subscriber, stopped with the
// last): the number of blocking Redis reads does not grow with clients.
// Each write has its own deadline, so a client that stops reading is cut;
// caps on open streams answer 429 (per client address) and 503 (total).
//
// # OpenAPI
//
// GET /openapi.json serves openapi.json, a hand-written OpenAPI 3.1
// description of every route (embedded; open without a token, like
// /healthz). The package's tests keep it and the router in step in both
// directions (chi.Walk) and validate every response of the test suite
// against it; a new route or parameter goes into openapi.json with the
// code.
//
// # Server settings
//
// NewServer returns the http.Server dsat serve uses: ReadHeaderTimeout
// against slowloris, an idle timeout and no whole-response WriteTimeout.
// Serve shuts down gracefully, ending open streams first (API.Close).
package httpapi
