package dsat

import (
	"math/rand/v2"
	"time"
)

// Limits and defaults of pipeline definitions (README, "Pipeline YAML reference").
const (
	MaxPartitions = 1024

	DefaultTimeout        = 30 * time.Second
	DefaultRetries        = 3
	DefaultBackoffInitial = time.Second
	DefaultBackoffMax     = 5 * time.Minute
	DefaultConcurrencyMin = 1
	DefaultConcurrencyMax = 64
	DefaultRouteBy        = "route"
	// MinQueueTimeout is the shortest queue_timeout: waiting tokens are
	// looked at about once a second (workers.Config.PromoteInterval).
	MinQueueTimeout = time.Second
	// DefaultRouteLabel is the switch case taken when no other case matches.
	DefaultRouteLabel = "default"
)

// Pipeline is a validated pipeline definition: a named, versioned directed
// acyclic graph of steps. Build one with ParsePipeline or LoadPipelines.
type Pipeline struct {
	Name       string
	Version    Version
	Partitions int
	Entry      string
	// Order lists the step names in declaration order.
	Order []string
	Steps map[string]*Step
	// File is where the definition was read from (for messages).
	File string
	// Schedules are the schedules the file declares (schedules:), each
	// running this pipeline; serve puts them at start.
	Schedules []ScheduleSpec

	// OnFailure names the step run once, with {task, step, error, input},
	// when a task of this pipeline fails (on_failure in YAML; "" none).
	// No step sends to it (onfailure.go).
	OnFailure string

	// Source is the YAML the definition was parsed from (ParsePipeline),
	// recorded with the version (Client.RecordVersions).
	Source []byte
	// Draining marks a version loaded from its record, not from a file,
	// to finish its unfinished tasks (Client.DrainingPipelines): its
	// tasks run, but Submit refuses it.
	Draining bool
}

// Step is one moving part of a pipeline.
type Step struct {
	Name    string
	Handler string
	// With holds the handler's own settings, as written in YAML.
	With map[string]any
	// Next lists the steps that all receive the output (fan-out when more
	// than one). Empty with no Routes: the step ends its branch.
	Next []string
	// RouteBy names the output field whose value picks a route.
	RouteBy string
	// Routes maps a route label to its next steps (a switch).
	Routes map[string][]string
	// Join makes the step a synchronizing merge: it runs once, when every
	// live token of the task is parked at it.
	Join bool
	// Timeout bounds one run of the step's handler. A sub-pipeline step
	// runs no handler: its timeout, when given in YAML, is ChildTimeout.
	Timeout time.Duration
	// ChildTimeout, for a sub-pipeline step whose timeout was given, is
	// the child task's deadline counted from its hand-off: a child still
	// running then is cancelled (reason "deadline") and the step fails,
	// retried with a new child by its retries. Zero: the child is not
	// bounded (the default timeout does not apply to children).
	ChildTimeout time.Duration
	// QueueTimeout, when positive, bounds how long a token may wait in
	// the step's stream before a worker picks it up: past it the token gets
	// TIMEOUT (no ACK) and is retried or dead-lettered like a failed
	// attempt (queue_timeout in YAML).
	QueueTimeout time.Duration
	// MaxBacklog, when positive, is backpressure: while this many tokens
	// wait in the step's streams, the steps that feed it read no new
	// tokens, and a submission to a pipeline whose entry step it is gets
	// ErrBacklogFull (max_backlog in YAML).
	MaxBacklog  int
	Retries     int
	Backoff     Backoff
	Concurrency Concurrency
	// Breaker, when set, is the step's circuit breaker (breaker in YAML).
	Breaker *Breaker
	// Limits, when set, are the step's limits: rate and running tokens,
	// over every satellite (limits in YAML).
	Limits *Limits
	// Preds lists the distinct predecessor steps (filled by validation).
	Preds []string
	// Line is where the step is defined in its file (0: not from a file).
	Line int `json:"-"`

	// Pipeline, for a sub-pipeline step (pipeline in YAML, no handler),
	// names the pipeline of the child task it submits with its input; the
	// step ends with the child (subpipe.go).
	Pipeline string
	// Map, join policies (issue 17; dsat/mapjoin.go).
	MapJoin
}

// Backoff is the delay schedule between attempts of a step.
type Backoff struct {
	Initial time.Duration
	Max     time.Duration
}

// Breaker is a step's circuit breaker: after Failures failed attempts
// within Within (all satellites together), the step opens — no new token
// is begun for OpenFor — then one probe token runs: its success closes the
// breaker, its failure opens it again.
type Breaker struct {
	Failures int           `json:"failures"`
	Within   time.Duration `json:"-"`
	OpenFor  time.Duration `json:"-"`
}

// Concurrency bounds a step's worker pool on each satellite.
type Concurrency struct {
	Min int `json:"min"`
	Max int `json:"max"`
}

// IsSwitch reports whether the step routes by label.
func (s *Step) IsSwitch() bool { return len(s.Routes) > 0 }

// Targets lists every step the step may send to, without duplicates.
func (s *Step) Targets() []string {
	if !s.IsSwitch() {
		return s.Next
	}
	seen := map[string]bool{}
	var out []string
	for _, label := range sortedKeys(s.Routes) {
		for _, t := range s.Routes[label] {
			if !seen[t] {
				seen[t] = true
				out = append(out, t)
			}
		}
	}
	return out
}

// Attempts is the number of runs a token gets at this step: 1 + Retries.
func (s *Step) Attempts() int { return 1 + s.Retries }

// Delay returns the backoff before attempt number next (2 for the first
// retry): exponential from Initial, capped at Max, with "equal jitter"
// (between half and all of the exponential delay), so retries of many tasks
// that failed together spread out.
func (b Backoff) Delay(next int, rnd *rand.Rand) time.Duration {
	d := b.Initial
	for i := 2; i < next && d < b.Max; i++ {
		d *= 2
	}
	if d > b.Max {
		d = b.Max
	}
	half := d / 2
	if half <= 0 {
		return d
	}
	var j int64
	if rnd != nil {
		j = rnd.Int64N(int64(half) + 1)
	} else {
		j = rand.Int64N(int64(half) + 1)
	}
	return half + time.Duration(j)
}

// Partition returns partition n of the pipeline's current API version.
func (p *Pipeline) Partition(n int) Partition {
	return Partition{Pipeline: p.Name, API: p.Version.API(), N: n}
}

// Joins lists the join steps in declaration order.
func (p *Pipeline) Joins() []string {
	var out []string
	for _, name := range p.Order {
		if p.Steps[name].Join {
			out = append(out, name)
		}
	}
	return out
}

// Edge is one arrow of the graph; Label is the switch case ("" for next).
type Edge struct {
	From  string `json:"from"`
	To    string `json:"to"`
	Label string `json:"label,omitempty"`
}

// Edges lists the graph's arrows in declaration order.
func (p *Pipeline) Edges() []Edge {
	var out []Edge
	for _, name := range p.Order {
		s := p.Steps[name]
		for _, t := range s.Next {
			e := Edge{From: name, To: t}
			if s.Map != "" {
				e.Label = "map " + s.Map // one token per element (issue 17)
			}
			out = append(out, e)
		}
		for _, label := range sortedKeys(s.Routes) {
			for _, t := range s.Routes[label] {
				out = append(out, Edge{From: name, To: t, Label: label})
			}
		}
	}
	return out
}
