// Package lua holds dsat's Redis Lua scripts, the only writers of task
// state. Each script checks the task's state hash, advances its state
// machine and emits events and tokens in one atomic call. Every key a script
// touches arrives in KEYS and shares one hash tag, so each call runs in one
// slot of a Redis Cluster; every script does all its checks before its first
// write, because Redis has no rollback.
//
// The task scripts (submit, begin, complete, fail, cancel, retry,
// deadline, progress) are prepended with lib.lua, the helpers they share; promote,
// renew, index_prune and breaker (which touch no task state; breaker's keys share the
// hash tag {breakers}) stand alone. The schedule scripts
// (schedule_put, schedule_claim, schedule_done) touch only schedule keys,
// which share the hash tag {sched}, and are prepended with schedlib.lua.
// Each file opens with a header naming every KEYS and ARGV entry and the
// return values.
package lua

import (
	"embed"

	"github.com/redis/go-redis/v9"
)

//go:embed *.lua
var files embed.FS

func mustRead(name string) string {
	b, err := files.ReadFile(name)
	if err != nil {
		panic("lua: missing embedded script " + name + ": " + err.Error())
	}
	return string(b)
}

// withLib prepends the shared helpers to a task script.
// maplib.lua (map and join policies) comes after lib.lua, whose helpers
// it uses.
func withLib(name string) string {
	return mustRead("lib.lua") + "\n" + mustRead("maplib.lua") + "\n" + mustRead(name)
}

// withSchedLib prepends the schedule scripts' helper.
func withSchedLib(name string) string { return mustRead("schedlib.lua") + "\n" + mustRead(name) }

// The scripts. Run them with Script.Run (EVALSHA, falling back to EVAL on
// NOSCRIPT); inside a pipeline, load them first with Script.Load.
var (
	Submit   = redis.NewScript(withLib("submit.lua"))
	Begin    = redis.NewScript(withLib("begin.lua"))
	Complete = redis.NewScript(withLib("complete.lua"))
	Fail     = redis.NewScript(withLib("fail.lua"))
	Cancel   = redis.NewScript(withLib("cancel.lua"))
	Retry    = redis.NewScript(withLib("retry.lua"))
	Deadline = redis.NewScript(withLib("deadline.lua"))
	Progress = redis.NewScript(withLib("progress.lua"))
	Promote  = redis.NewScript(mustRead("promote.lua"))
	Breaker  = redis.NewScript(mustRead("breaker.lua"))
	Renew    = redis.NewScript(mustRead("renew.lua"))
	// IndexPrune drops the task index members of expired tasks.
	IndexPrune = redis.NewScript(mustRead("index_prune.lua"))
	// Sub-pipelines (issue 17; docs/design.md, "Sub-pipelines").
	SubpipePark = redis.NewScript(withLib("subpipe_park.lua"))
	SubpipeLink = redis.NewScript(mustRead("subpipe_link.lua"))
	// Limits holds a step's limits (rate, running) over every satellite.
	Limits = redis.NewScript(mustRead("limits.lua"))
	// The schedule scripts (docs/design.md, "Schedules").
	SchedulePut   = redis.NewScript(withSchedLib("schedule_put.lua"))
	ScheduleClaim = redis.NewScript(withSchedLib("schedule_claim.lua"))
	ScheduleDone  = redis.NewScript(withSchedLib("schedule_done.lua"))
)

// All lists every script, for loading them up front (readiness checks,
// pipelines, after a failover).
var All = map[string]*redis.Script{
	"submit": Submit, "begin": Begin, "complete": Complete, "fail": Fail,
	"cancel": Cancel, "retry": Retry, "deadline": Deadline, "progress": Progress, "promote": Promote, "breaker": Breaker, "renew": Renew, "index_prune": IndexPrune,
	"subpipe_park": SubpipePark, "subpipe_link": SubpipeLink,
	"schedule_put": SchedulePut, "schedule_claim": ScheduleClaim, "schedule_done": ScheduleDone,
	"limits": Limits,
}
