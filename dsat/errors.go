package dsat

import (
	"errors"
	"fmt"
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
	// ErrInvalidTrace means a trace context is not a W3C traceparent.
	ErrInvalidTrace = errors.New("dsat: invalid traceparent")
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
	// ErrNoPipelines means a pipelines folder holds no *.yaml or *.yml file.
	ErrNoPipelines = errors.New("dsat: no pipeline files (*.yaml, *.yml) found")
	// ErrTokenNotRunning means a begin/complete/fail call did not match the
	// token's state (it is not queued or running at that attempt).
	ErrTokenNotRunning = errors.New("dsat: token not in a runnable state")
)

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
