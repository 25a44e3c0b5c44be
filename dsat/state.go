package dsat

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Task statuses.
const (
	StatusPending = "pending"
	// StatusScheduled: submitted with a later run time; its entry token
	// reaches the entry step at RunAt.
	StatusScheduled = "scheduled"
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// TaskState is a task's state as stored in its hash (docs/design.md §2, §3).
type TaskState struct {
	ID        string               `json:"id"`
	Pipeline  string               `json:"pipeline"`
	Version   string               `json:"version"`
	Status    string               `json:"status"`
	CreatedAt Time                 `json:"created_at"`
	UpdatedAt Time                 `json:"updated_at"`
	Seq       int64                `json:"seq"`
	Steps     map[string]StepState `json:"steps"`
	Result    json.RawMessage      `json:"result"`
	Error     string               `json:"error"`
	// RunAt is when a delayed submission's entry token is due (absent
	// for a task submitted to run at once).
	RunAt *Time `json:"run_at,omitempty"`
	// Deadline is when the task is cancelled if it has not ended (absent
	// for a task submitted without one).
	Deadline *Time `json:"deadline,omitempty"`
	// Priority is the task's priority: high, normal or low.
	Priority Priority `json:"priority"`
	// Parent is, for the child task of a sub-pipeline step, that step's
	// task and step (absent for other tasks).
	Parent *ParentRef `json:"parent,omitempty"`
}

// StepState is one step's part of a task's state: its latest token's
// state (queued, running, retrying, snoozed, waiting, done, dead), the
// attempt number, the worker and the last error. The last error is the
// step's, whichever token failed last: a step that runs a map's items
// shows it only while one of its items has a failure that stands
// (retrying or dead), never one of an item that has succeeded since.
type StepState struct {
	State string `json:"state"`
	// Token is the id of the step's latest token (absent while tokens
	// are parked at a join).
	Token    string `json:"token,omitempty"`
	Attempts int    `json:"attempts"`
	Worker   string `json:"worker"`
	Error    string `json:"error"`
	// Progress is the step's latest progress report while its token runs
	// (or after it failed; absent once the step is done, and for a step
	// that never reported).
	Progress *StepProgress `json:"progress,omitempty"`
	// Child is, for a sub-pipeline step, the id of the child task its
	// latest token submitted (absent for other steps).
	Child string `json:"child,omitempty"`
	// Items counts the tokens of a step that runs a map's items by state
	// (queued, running, retrying, done, dead, cancelled...; absent for
	// other steps).
	Items ItemCounts `json:"items,omitempty"`
}

// Final reports whether the status is final until a retry.
func Final(status string) bool {
	return status == StatusSucceeded || status == StatusFailed || status == StatusCancelled
}

// Get returns the task's state. A malformed id is ErrInvalidTaskID (no
// Redis call); an unknown one ErrTaskNotFound.
func (c *Client) Get(ctx context.Context, id string) (*TaskState, error) {
	tid, err := ParseTaskID(id)
	if err != nil {
		return nil, err
	}
	var mp *Pipeline // item counts are kept for the mapped steps of a pipeline with a map or join policy
	if cp, err := c.pipelineFor(tid.Partition); err == nil && cp.failMapJoin != nil {
		mp = cp.p
	}
	f := newTaskFold(mp)
	var rcmd *redis.StringCmd
	found, err := c.readTaskHash(ctx, c.keys.Task(tid.Partition, id), f, func(p redis.Pipeliner) {
		rcmd = p.Get(ctx, c.keys.TaskResult(tid.Partition, id))
	})
	if err != nil {
		return nil, fmt.Errorf("dsat: get task: %w", err)
	}
	if !found {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	}
	st := stateFromHash(id, f.h)
	for step, n := range f.items {
		if st.Status == StatusCancelled {
			n = n.settledByCancel()
		}
		s := st.Steps[step]
		s.Items = n
		if n["retrying"]+n["dead"] == 0 {
			s.Error = "" // every failed item has recovered since: stale
		}
		st.Steps[step] = s
	}
	if r, err := rcmd.Result(); err == nil && r != "" {
		st.Result = json.RawMessage(r)
	}
	return st, nil
}

func stateFromHash(id string, h map[string]string) *TaskState {
	st := &TaskState{
		ID: id, Pipeline: h["pipeline"], Version: h["pv"], Status: h["status"],
		CreatedAt: msTime(h["created"]), UpdatedAt: msTime(h["updated"]),
		Steps: map[string]StepState{}, Error: h["error"],
	}
	st.Seq, _ = strconv.ParseInt(h["seq"], 10, 64)
	if v := h["run_at"]; v != "" {
		t := msTime(v)
		st.RunAt = &t
	}
	if v := h["deadline"]; v != "" {
		t := msTime(v)
		st.Deadline = &t
	}
	st.Priority, _ = ParsePriority(h["pr"])
	latest := map[string]int{} // step -> its latest token
	for f, v := range h {
		switch {
		case strings.HasPrefix(f, "k:"):
			tok, err := strconv.Atoi(f[2:])
			rec, ok := parseTokenRecord(v)
			if err != nil || !ok || tok < latest[rec.step] {
				continue
			}
			latest[rec.step] = tok
			s := st.Steps[rec.step]
			s.State, s.Token, s.Attempts, s.Worker = rec.state, f[2:], rec.attempts, rec.worker
			st.Steps[rec.step] = s
		case strings.HasPrefix(f, "pk:"):
			if n, _ := strconv.Atoi(v); n > 0 {
				name := f[3:]
				s := st.Steps[name]
				// Whichever field comes first: an earlier run's record
				// says nothing of the parked tokens.
				s.State, s.Token, s.Attempts, s.Worker = "waiting", "", 0, ""
				st.Steps[name] = s
				latest[name] = math.MaxInt // parked tokens outrank any earlier run of the join
			}
		case strings.HasPrefix(f, "p:"):
			if pr, ok := parseProgress(v); ok {
				s := st.Steps[f[2:]]
				s.Progress = pr
				st.Steps[f[2:]] = s
			}
		case strings.HasPrefix(f, "s:") && strings.HasSuffix(f, ":err"):
			name := f[2 : len(f)-4]
			s := st.Steps[name]
			s.Error = v
			st.Steps[name] = s
		}
	}
	subpipeState(st, h)
	if st.Status == StatusCancelled {
		for name, s := range st.Steps {
			s.State = settledByCancel(s.State)
			st.Steps[name] = s
		}
	}
	return st
}

// settledByCancel is how a step's token state shows in a cancelled task:
// a token that had not ended (queued, running, retrying, snoozed, or
// parked at a join) is cancelled: cancel.lua writes no token record (a
// running handler is told, and its end is dropped), so the record keeps
// the state the token had.
func settledByCancel(state string) string {
	switch state {
	case "queued", "running", "retrying", "snoozed", "waiting":
		return StatusCancelled
	}
	return state
}

// tokenRecord is a token's record in the task hash (lua/lib.lua):
// "<state>|<attempt>|<step>|<worker>".
type tokenRecord struct {
	state, step, worker string
	attempts            int
}

// tokenStates names the record's state letters as the API shows them.
var tokenStates = map[string]string{
	"q": "queued", "r": "running", "w": "retrying", "s": "snoozed", "d": "done", "x": "dead",
	"c": "cancelled", // by a join: any (lua/maplib.lua)
}

func parseTokenRecord(v string) (tokenRecord, bool) {
	parts := strings.SplitN(v, "|", 4)
	if len(parts) != 4 {
		return tokenRecord{}, false
	}
	state, ok := tokenStates[parts[0]]
	att, err := strconv.Atoi(parts[1])
	if !ok || err != nil {
		return tokenRecord{}, false
	}
	if parts[0] == "w" {
		att-- // a token waiting for a retry records its next attempt
	}
	return tokenRecord{state: state, step: parts[2], worker: parts[3], attempts: att}, true
}
