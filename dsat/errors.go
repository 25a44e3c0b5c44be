package dsat

import (
	"context"
	"io"
	"net"
	"syscall"

	"errors"
	"fmt"
	"github.com/redis/go-redis/v9"
	"strings"
)

// Sentinel errors. Callers test them with errors.Is; the HTTP layer maps
// each one to a status code.
var (
	// ErrTaskNotFound means no state exists for the task id (never
	// submitted, or expired after its retention period).
	ErrTaskNotFound = errors.New("dsat: task not found")
	// ErrPipelineNotFound means no pipeline of that name is loaded.
	ErrPipelineNotFound = errors.New("dsat: pipeline not found")
	// ErrInvalidTaskID means a task id is malformed; no Redis call was made.
	ErrInvalidTaskID = errors.New("dsat: invalid task id")
	// ErrInvalidName means a pipeline or step name is not [a-z0-9_-]{1,64}.
	ErrInvalidName = errors.New("dsat: invalid name")
	// ErrInvalidVersion means a version string is not X.Y or X.Y.Z.
	ErrInvalidVersion = errors.New("dsat: invalid version")
	// ErrInvalidEnvelope means a stream entry is not a valid token.
	ErrInvalidEnvelope = errors.New("dsat: invalid envelope")
	// ErrInvalidPayload means a payload is not valid JSON or is too large.
	ErrInvalidPayload = errors.New("dsat: invalid payload")
	// ErrInvalidDelay means a delayed submission's run time is too far
	// ahead (or its delay malformed).
	ErrInvalidDelay = errors.New("dsat: invalid delay")
	// ErrInvalidDeadline means a submission's deadline has passed, is too
	// far ahead, comes before its run time, or is malformed.
	ErrInvalidDeadline = errors.New("dsat: invalid deadline")
	// ErrBacklogFull means a pipeline's entry step has max_backlog tokens
	// waiting: submit again later.
	ErrBacklogFull = errors.New("dsat: the entry step's backlog is full")
	// ErrInvalidTrace means a trace context is not a W3C traceparent.
	ErrInvalidTrace = errors.New("dsat: invalid traceparent")
	// ErrInvalidIdempotencyKey means an idempotency key is longer than
	// 255 bytes.
	ErrInvalidIdempotencyKey = errors.New("dsat: invalid idempotency key")
	// ErrInvalidPriority: a priority other than high, normal or low.
	ErrInvalidPriority = errors.New("dsat: invalid priority")
	// ErrIdempotencyConflict means an idempotency key was reused with a
	// different payload.
	ErrIdempotencyConflict = errors.New("dsat: idempotency key reused with a different payload")
	// ErrTaskFinal means the task already reached a final status, so it
	// cannot be cancelled.
	ErrTaskFinal = errors.New("dsat: task already final")
	// ErrTaskNotFailed means only a failed task can be retried.
	ErrTaskNotFailed = errors.New("dsat: task is not failed")
	// ErrNoRoute means a switch step's output matched no route and the
	// step has no default route.
	ErrNoRoute = errors.New("dsat: no route matches")
	// ErrMapOutput means a map step's output has no array in its map field,
	// or more items than max_items: a final failure of the step.
	ErrMapOutput = errors.New("dsat: map output")
	// ErrNoPipelines means a pipelines folder holds no *.yaml or *.yml file.
	ErrNoPipelines = errors.New("dsat: no pipeline files (*.yaml, *.yml) found")
	// ErrStepNotFound means a step is not in the loaded version of its
	// pipeline (a token or dead letter of another version).
	ErrStepNotFound = errors.New("dsat: no such step in the loaded pipeline version")
)

// Stats errors.
var (
	// ErrInvalidWindow means a stats window is not a duration Stats reads
	// (ParseStatsWindow).
	ErrInvalidWindow = errors.New("dsat: invalid stats window")
)

// Temporary reports whether err is a failure of Redis or of the way to it
// (network, timeout, a server busy, loading, failing over or without the
// script), after which the same call may succeed: an engine call is
// idempotent, so it may then be repeated. Every other error — about the
// input, the task or the pipeline — is final.
func Temporary(err error) bool {
	if err == nil {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return true
	}
	for _, prefix := range []string{"LOADING", "BUSY", "TRYAGAIN", "CLUSTERDOWN", "MASTERDOWN", "READONLY", "NOSCRIPT", "MOVED", "ASK", "NOREPLICAS"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// ValidationError is one problem in a pipeline definition. File, Step and
// Field say where; Line is the YAML line when known (0 otherwise).
type ValidationError struct {
	File  string
	Line  int
	Step  string
	Field string
	Msg   string
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(":")
	if e.Step != "" {
		fmt.Fprintf(&b, " step %q:", e.Step)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, " field %q:", e.Field)
	}
	b.WriteString(" ")
	b.WriteString(e.Msg)
	return b.String()
}

// ValidationErrors holds every problem found in one definition file; a file
// is reported whole, not stopped at the first error.
type ValidationErrors []*ValidationError

func (es ValidationErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find each *ValidationError.
func (es ValidationErrors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// Schedule errors (schedule_store.go).
var (
	// ErrScheduleNotFound means no schedule has that id.
	ErrScheduleNotFound = errors.New("dsat: schedule not found")
	// ErrInvalidSchedule means a schedule definition or id is invalid; the
	// message names each field and what to fix.
	ErrInvalidSchedule = errors.New("dsat: invalid schedule")
	// ErrTooManySchedules means MaxSchedules schedules exist already.
	ErrTooManySchedules = errors.New("dsat: too many schedules")
)

// ErrInvalidSearch means a task search or bulk action was given a bad
// status, limit, time range or cursor; the message says which.
var ErrInvalidSearch = errors.New("dsat: invalid task search")
