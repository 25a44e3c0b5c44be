// Package dsat is the core of dsat ("distributed satellites"): pipeline
// definitions, the version scheme, Redis keys, task ids, the token
// envelope, and the Client that submits tasks and reads their state.
//
// # The model
//
// A pipeline is a named, versioned directed acyclic graph of steps,
// declared in YAML (ParsePipeline, LoadPipelineDir). Each step is user code
// (a handler) run by pools of workers in satellite processes; each step has
// a Redis stream, read by its workers through a consumer group named after
// the step, so work balances across processes and machines.
//
// Submitting a payload creates a task: a state hash and an event stream in
// Redis, and one token (a stream entry, see Envelope) on the entry step's
// stream. A worker that takes the token calls Begin, runs the handler, then
// Complete with the output or Fail with the error. Complete runs the routers
// between steps inside the same atomic Lua script:
//
//   - next with several steps is a fan-out: each gets its own token;
//   - routes is a switch: the handler's route label, or else the output's
//     route_by field, picks the case ("default" when none matches; no
//     default fails the token with a clear error);
//   - join: true is a synchronizing merge: tokens reaching it are parked,
//     and it fires once, when no other token of the task is alive, with the
//     input {predecessor: output}. A join after a switch therefore waits only
//     for the branches that were taken.
//
// When no token is left alive the task ends: HAPPY_END with the result (the
// last step's output, or {step: output} when it ends in several steps), or
// DEAD when a token ran out of attempts. Fail schedules retries with
// exponential backoff and jitter in a sorted set, from which Promote moves
// them back to their stream when due. Retry re-drives a failed task's dead
// tokens with fresh attempts; Cancel ends a task at once.
//
// # Exactly-once state, at-least-once runs
//
// The Lua scripts (package lua) are the only writers of task state. Each
// checks the task's hash before its first write, and each is idempotent per
// (task, token, attempt): a redelivered token, or a script call that
// go-redis retried after a lost reply, changes nothing the second time and
// says so (Outcome AlreadyApplied). Handlers may therefore run more than once
// for a token (a worker crash, a reclaim), but each state change — and each
// event — happens exactly once. Every event carries a seq that grows by one
// per event of the task, and is written with the same id to the task's
// event stream and the partition's capped firehose.
//
// # Keys and partitions
//
// All keys one script touches share the hash tag {pipeline@X.Y#partition}
// (see Keys), so every script runs in one slot of a Redis Cluster, and a
// pipeline with several partitions spreads over the cluster's masters. Task
// ids (ParseTaskID) encode that partition, sort by creation time and are
// URL-safe, so reading a task needs no scan.
//
// # Schedules
//
// A schedule (ScheduleSpec: every, or cron in a time zone) submits one
// task of a pipeline per slot. Schedules live in Redis (PutSchedule,
// Schedules, PauseSchedule, DeleteSchedule); any number of processes call
// FireSchedules (workers.Scheduler does, every 500 ms) and each slot still
// makes exactly one task: a compare-and-set script claims each slot once,
// and every firing of a slot submits with the slot's idempotency key
// (SlotKey), so a slot taken over after a crash is not submitted twice.
// The catch-up policy (none, one, all) and the jitter are pure functions
// of the definition, the slot and the clock.
package dsat
