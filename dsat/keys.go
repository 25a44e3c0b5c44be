package dsat

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
)

// DefaultPrefix is the first segment of every key dsat writes.
const DefaultPrefix = "dsat"

// Partition names one shard of one pipeline API version. All keys of a
// partition share the hash tag {pipeline@X.Y#N}, so every script runs in a
// single slot of a Redis Cluster.
type Partition struct {
	Pipeline string
	API      string // "X.Y" of the pipeline version
	N        int
}

// Tag returns the hash tag "{pipeline@X.Y#N}".
func (p Partition) Tag() string {
	return "{" + p.Pipeline + "@" + p.API + "#" + strconv.Itoa(p.N) + "}"
}

// Keys builds every Redis key dsat uses. It is the only place that does.
// Names must already be valid (see ValidName); the constructors of Pipeline,
// TaskID and Partition guarantee it.
type Keys struct {
	prefix string
}

// NewKeys returns a key builder for prefix ("" means DefaultPrefix).
func NewKeys(prefix string) Keys {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	return Keys{prefix: prefix}
}

// Prefix returns the configured key prefix.
func (k Keys) Prefix() string { return k.prefix }

func (k Keys) base(p Partition) string { return k.prefix + ":" + p.Tag() + ":" }

// Step is a stream (consumer group named after the step): tokens waiting
// for the step.
func (k Keys) Step(p Partition, step string) string { return k.base(p) + "s:" + step }

// StepAt is the stream of step's tokens of one priority level (same
// consumer group): Step for normal, Step + ":hi" / ":lo" for high and low.
// A step name holds no ':', so no level's key is another step's.
func (k Keys) StepAt(p Partition, step string, level Priority) string {
	return k.base(p) + "s:" + step + level.streamSuffix()
}

// Priorities is the hash of the pipelines that use priorities: field the
// pipeline's name, value when it was first marked (ms). One key outside
// the partitions: every satellite reads it (see priority.go).
func (k Keys) Priorities() string { return k.prefix + ":priorities" }

// Task is a hash: the task's state.
func (k Keys) Task(p Partition, task string) string { return k.base(p) + "t:" + task }

// TaskLog is a string: the task's events, one line each (see ParseLog),
// appended by the scripts that make them.
func (k Keys) TaskLog(p Partition, task string) string { return k.base(p) + "t:" + task + ":log" }

// taskEventsV1 is the stream that held a task's events before the log:
// read for tasks written by an older version, until their retention ends.
func (k Keys) taskEventsV1(p Partition, task string) string { return k.base(p) + "t:" + task + ":ev" }

// TaskResult is a string: a succeeded task's result. It lives outside the
// state hash so the hash keeps Redis's compact encoding (a value longer
// than hash-max-listpack-value would turn the whole hash into a hash table).
func (k Keys) TaskResult(p Partition, task string) string { return k.base(p) + "t:" + task + ":res" }

// Firehose is a capped stream: every event of the partition.
func (k Keys) Firehose(p Partition) string { return k.base(p) + "ev" }

// Retry is a sorted set: delayed retries, score = due time in ms.
func (k Keys) Retry(p Partition) string { return k.base(p) + "retry" }

// Deadlines is a partition's sorted set of tasks submitted with a
// deadline: member the task id, score the deadline (ms). A member leaves
// when its deadline passes (deadline.lua), even when its task ended
// before.
func (k Keys) Deadlines(p Partition) string { return k.base(p) + "deadlines" }

// TaskIndex is a sorted set, every score 0: the partition's task index
// (task search, issue 18), one member per task, "<status letter><the 26
// characters of its id that sort by creation time>" (lua/lib.lua, "Task
// index"; dsat/search.go reads it). The members of expired tasks are
// removed by the time keepers (Client.PruneIndex).
func (k Keys) TaskIndex(p Partition) string { return k.base(p) + "ix" }

// Dead is a stream: dead letters with their reason.
func (k Keys) Dead(p Partition) string { return k.base(p) + "dead" }

// Idempotency is a string with a TTL: idempotency key -> task id. The user's
// key is hashed, so any bytes are safe and the key length is bounded.
func (k Keys) Idempotency(p Partition, key string) string {
	sum := sha256.Sum256([]byte(key))
	return k.base(p) + "idem:" + hex.EncodeToString(sum[:16])
}

// Breakers is the hash of the steps' circuit breaker states (lua/breaker.lua):
// field "pipeline/step". It and the failure counts share the hash tag
// {breakers}, so breaker.lua runs in one slot of a cluster.
func (k Keys) Breakers() string { return k.prefix + ":{breakers}:state" }

// BreakerFailures counts a step's failed attempts within its breaker's
// window (a string with that TTL).
func (k Keys) BreakerFailures(pipeline, step string) string {
	return k.prefix + ":{breakers}:fails:" + pipeline + "/" + step
}

// LimitRunning is a sorted set of a step's running leases (lua/limits.lua):
// lease id -> when it ends (ms). It and LimitRate share a hash tag of
// their own per step, {limits:<pipeline>/<step>}, so a step's limits hold
// over all its partitions in one slot of a cluster.
func (k Keys) LimitRunning(pipeline, step string) string {
	return k.prefix + ":{limits:" + pipeline + "/" + step + "}:running"
}

// LimitRate is a sorted set of a step's rate grants in the current window
// (member <lease id>@<ms>, score = when it was granted, ms).
func (k Keys) LimitRate(pipeline, step string) string {
	return k.prefix + ":{limits:" + pipeline + "/" + step + "}:rate"
}

// LimitRateBatches is a sorted set of a step's batches of rate permits
// (member <holder>@<ms>|<count>, score = the end of the batch's life, ms):
// each counts <count> grants in the rate's window.
func (k Keys) LimitRateBatches(pipeline, step string) string {
	return k.prefix + ":{limits:" + pipeline + "/" + step + "}:batches"
}

// LimitKeyRunning is a sorted set of a step's running leases of one
// fairness key (limits.key): lease id -> when it ends (ms), expiring
// once idle. A key longer than 64 bytes is named by its SHA-256.
func (k Keys) LimitKeyRunning(pipeline, step, key string) string {
	return k.prefix + ":{limits:" + pipeline + "/" + step + "}:k:" + limitKeyName(key) + ":running"
}

// LimitKeyRate is a sorted set of a step's rate grants of one fairness
// key (member <lease id>@<ms>, score = when granted, ms).
func (k Keys) LimitKeyRate(pipeline, step, key string) string {
	return k.prefix + ":{limits:" + pipeline + "/" + step + "}:k:" + limitKeyName(key) + ":rate"
}

// LimitKeyIndex is a sorted set of a step's fairness keys (with
// running_per_key): key -> its running leases when last counted, expiring
// with the last lease (LimitUsage.Keys).
func (k Keys) LimitKeyIndex(pipeline, step string) string {
	return k.prefix + ":{limits:" + pipeline + "/" + step + "}:keys"
}

// limitKeyName is a fairness key as it appears in a Redis key: itself, or
// "#" and its SHA-256 in hex when it is longer than 64 bytes or holds a
// ':' (so two keys never share a name).
func limitKeyName(key string) string {
	if len(key) <= 64 && !strings.ContainsAny(key, ":#") {
		return key
	}
	sum := sha256.Sum256([]byte(key))
	return "#" + hex.EncodeToString(sum[:])
}

// BreakerTransitions is a hash counting each breaker's transitions since
// the key was made: field "pipeline/step|to", to one of open, half_open
// and closed (lua/breaker.lua; read for the Prometheus metrics).
func (k Keys) BreakerTransitions() string { return k.prefix + ":{breakers}:transitions" }

// Versions is the hash of the pipeline versions loaded by any process:
// field "<pipeline>@<X.Y>", value its partitions (versions.go). One key
// outside the partitions.
func (k Keys) Versions() string { return k.prefix + ":versions" }

// VersionDefinitions is the hash of the recorded versions' definitions:
// field "<pipeline>@<X.Y>", value the YAML last loaded for it
// (versions.go). One key outside the partitions.
func (k Keys) VersionDefinitions() string { return k.prefix + ":versions:def" }

// Paused is the hash of pauses (dsat.Paused): field "pipeline" or
// "pipeline/step", value when it was paused (ms). One key outside the
// partitions: every satellite reads it.
func (k Keys) Paused() string { return k.prefix + ":paused" }

// Satellite is a string with a TTL: one satellite's heartbeat record
// (JSON). It lives outside every hash tag.
func (k Keys) Satellite(id string) string { return k.prefix + ":sat:" + id }

// Satellites is a sorted set of satellite ids scored by last heartbeat (ms).
func (k Keys) Satellites() string { return k.prefix + ":sats" }

// pipelinePattern matches every key of every partition of the named
// pipeline (SCAN MATCH; names hold no glob characters).
func (k Keys) pipelinePattern(name string) string { return k.prefix + ":{" + name + "@*" }

// schedTag is the hash tag of every schedule key: they all live in one
// slot of a Redis Cluster, so one script may touch a schedule, the due set
// and the index together. It holds no '@', so it never matches a
// pipeline's tag {pipeline@X.Y#N}.
const schedTag = "{sched}"

// Schedule is a hash: one schedule's definition (JSON), its next slot and
// what its last firing did (docs/design.md, "Schedules").
func (k Keys) Schedule(id string) string { return k.prefix + ":" + schedTag + ":sc:" + id }

// SchedulesDue is a sorted set: active schedule id -> when it next needs a
// firing (ms): its next slot's run time, or when a claimed firing's lease
// ends.
func (k Keys) SchedulesDue() string { return k.prefix + ":" + schedTag + ":due" }

// ScheduleIndex is a sorted set (every score 0, so ids sort by name): every
// schedule id, paused ones included.
func (k Keys) ScheduleIndex() string { return k.prefix + ":" + schedTag + ":ids" }

// Stats is a hash with a TTL: one pipeline's step statistics for the
// bucket starting at the Unix second bucket (dsat.RecordStats, fields
// "<step>:<kind>"). Every bucket of a pipeline shares the hash tag
// {stats:<pipeline>} (no '@', so it never matches a partition's tag): one
// cluster slot per pipeline, so Stats reads a window in one round trip.
func (k Keys) Stats(pipeline string, bucket int64) string {
	return k.prefix + ":{stats:" + pipeline + "}:" + strconv.FormatInt(bucket, 10)
}

// Sub-pipelines (issue 17; docs/design.md, "Sub-pipelines").

// Children is a partition's sorted set of the tokens of sub-pipeline steps
// waiting for their child task: member "<task>|<token>|<attempt>|<step>|<child id>",
// score when the child was submitted (ms). A sweep ends each with its
// child's outcome (Client.SettleChildren).
func (k Keys) Children(p Partition) string { return k.base(p) + "children" }

// ChildInput is a string: the input of a sub-pipeline step's token while
// its child runs, kept for a retry of the step (its stream entry is gone).
func (k Keys) ChildInput(p Partition, task, token string) string {
	return k.base(p) + "t:" + task + ":ci:" + token
}
