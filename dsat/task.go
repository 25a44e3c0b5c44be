package dsat

// Task is what a handler receives: one token of a task at one step.
type Task struct {
	// ID is the task id.
	ID string
	// Pipeline and Version name the pipeline the task runs on.
	Pipeline string
	Version  Version
	// Step is the step being run; With its settings from the YAML.
	Step string
	With map[string]any
	// Token is the token id (unique within the task); Attempt counts runs
	// of this token at this step from 1.
	Token   string
	Attempt int
	// Payload is the input: the entry payload, the previous step's output,
	// or for a join {predecessor: output}. ContentType is its media type.
	Payload     []byte
	ContentType string
	// Trace is the W3C traceparent given at submission, if any.
	Trace string
}

// Result is what a handler returns.
type Result struct {
	// Output is the step's output (JSON), the next steps' input.
	Output []byte
	// Route, when set, picks the switch case (instead of the output's
	// route_by field).
	Route string
}
