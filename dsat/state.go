package dsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Task statuses.
const (
	StatusPending   = "pending"
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
)

// TaskState is a task's state as stored in its hash (DESIGN §7).
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
}

// StepState is one step's part of a task's state: its latest token's
// state (queued, running, retrying, snoozed, waiting, done, dead), the
// attempt number, the worker and the last error.
type StepState struct {
	State    string `json:"state"`
	Attempts int    `json:"attempts"`
	Worker   string `json:"worker"`
	Error    string `json:"error"`
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
	var hcmd *redis.MapStringStringCmd
	var rcmd *redis.StringCmd
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		hcmd = p.HGetAll(ctx, c.keys.Task(tid.Partition, id))
		rcmd = p.Get(ctx, c.keys.TaskResult(tid.Partition, id))
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dsat: get task: %w", err)
	}
	h := hcmd.Val()
	if len(h) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrTaskNotFound, id)
	}
	st := stateFromHash(id, h)
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
	for f, v := range h {
		rest, ok := strings.CutPrefix(f, "s:")
		if !ok {
			continue
		}
		i := strings.LastIndexByte(rest, ':')
		if i < 0 {
			continue
		}
		name, attr := rest[:i], rest[i+1:]
		s := st.Steps[name]
		switch attr {
		case "st":
			s.State = v
		case "at":
			s.Attempts, _ = strconv.Atoi(v)
		case "w":
			s.Worker = v
		case "err":
			s.Error = v
		}
		st.Steps[name] = s
	}
	return st
}
