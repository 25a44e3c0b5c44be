package workers

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsat-dev/dsat/dsat"
)

// Config tunes a Satellite. The zero value is usable: every step of the
// client's pipelines, default timings, no logs.
type Config struct {
	// ID names this satellite (its consumer name in every group). Default:
	// host-pid-random, unique per process start.
	ID string
	// Version is the binary's version, shown in the heartbeat record.
	Version string
	// Steps limits the steps served: "pipeline/step" or "pipeline" (all its
	// steps). Empty: every step of every pipeline of the client.
	Steps []string
	// Logger receives the satellite's logs; the zero value logs nothing.
	Logger zerolog.Logger
	// VisibilityTimeout is how long a token may sit un-acknowledged before
	// another satellite reclaims it. Default: the step's timeout + 30s. A
	// running handler renews its claim every third of it.
	VisibilityTimeout time.Duration
	// ShutdownTimeout is how long Stop lets running handlers finish before
	// cancelling them (their tokens stay pending for the reclaimer).
	// Default 30s.
	ShutdownTimeout time.Duration
	// Block is how long one XREADGROUP waits for new tokens. Default 2s.
	Block time.Duration
	// ReadBatch is the most tokens one read takes. Default 64.
	ReadBatch int
	// BatchLinger is how long a step's reader, after a read that found a
	// backlog, waits for half of its pool to be free before it reads again
	// (while its handlers run): larger batches mean fewer Redis calls per
	// token under load. An idle step never waits. Default 2ms; negative
	// turns it off.
	BatchLinger time.Duration
	// ReadLinger is how long a step's reader, after a read that found
	// fewer tokens than it had room for (tokens trickle in from an upstream
	// step), waits before it reads again, so that a loaded downstream step
	// also reads and records its results in batches. The tokens read are
	// running meanwhile; a token that arrives during the wait waits at most
	// this long. Default 1ms; negative turns it off.
	ReadLinger time.Duration
	// BeginWindow is how long a handler runs before its token is begun
	// with a call of its own (ACK written, ownership recorded for cancel,
	// renewal and reclaim). A handler that returns sooner needs no such
	// call: the call that records its result writes its ACK, with the time
	// it started, in the same event entry as its END. Default 10ms;
	// negative begins every token before its handler runs.
	BeginWindow time.Duration
	// ReclaimInterval is how often dead satellites' tokens are looked for.
	// Default: a quarter of the smallest visibility timeout, at most 15s.
	ReclaimInterval time.Duration
	// PromoteInterval is how often due retries are moved back. Default 1s.
	PromoteInterval time.Duration
	// FlowInterval is how often the pauses are read: a paused step's
	// reader stops within it. Default 500ms.
	FlowInterval time.Duration
	// HeartbeatInterval is how often the satellite reports itself; its
	// record expires after three intervals. Default 5s.
	HeartbeatInterval time.Duration
	// ScaleInterval is how often pools are resized. Default 1s.
	ScaleInterval time.Duration
	// QuietPeriod is how long a pool stays idle before it shrinks.
	// Default 30s.
	QuietPeriod time.Duration
	// WatchInterval is how often running tokens are checked for a cancelled
	// task (and renewed when due). Default 500ms.
	WatchInterval time.Duration
	// DeadConsumerIdle is how long a consumer of a satellite that no longer
	// reports itself must be idle, with nothing pending, before it is
	// removed from its group. Default: twice the visibility timeout, at
	// least 10 minutes.
	DeadConsumerIdle time.Duration
	// MaxPayload bounds a token's payload (0: the client's MaxPayload).
	MaxPayload int
	// OnResult, when set, is called after each handler run with its outcome
	// ("ok", "error", "timeout", "panic", "snooze", "cancelled") and
	// duration, e.g. for metrics.
	OnResult func(pipeline, step, outcome string, d time.Duration)
	// StatsInterval is how often the steps' statistics (dsat.RecordStats)
	// are written: one pipelined write per interval for all steps, and one
	// at each stats bucket's end. Default 2s; negative turns them off.
	StatsInterval time.Duration
	// TracerProvider, when set, gets one span per step attempt, in the
	// task's trace (see package tracing; nil: no spans, no cost). Use a
	// provider with tracing.IDGenerator for a join's links to resolve.
	TracerProvider trace.TracerProvider
	// beforeComplete is a fault-injection hook for tests only: it runs
	// after a handler returned and before Complete. Only this package's
	// tests and binaries built with the dsattest tag can set it
	// (testhooks_dsattest.go).
	beforeComplete func(t *dsat.Task)
	// rateBatchMin, when positive, replaces rateBatchMin for this
	// satellite (tests only: small rates taking their permits in batches).
	rateBatchMin int
}

func (c Config) withDefaults() Config {
	if c.ID == "" {
		c.ID = defaultID()
	}
	if c.ShutdownTimeout <= 0 {
		c.ShutdownTimeout = 30 * time.Second
	}
	if c.Block <= 0 {
		c.Block = 2 * time.Second
	}
	if c.ReadBatch <= 0 {
		c.ReadBatch = 64
	}
	if c.BatchLinger == 0 {
		c.BatchLinger = 2 * time.Millisecond
	}
	if c.ReadLinger == 0 {
		c.ReadLinger = time.Millisecond
	}
	if c.BeginWindow == 0 {
		c.BeginWindow = 10 * time.Millisecond
	}
	if c.PromoteInterval <= 0 {
		c.PromoteInterval = time.Second
	}
	if c.FlowInterval <= 0 {
		c.FlowInterval = 500 * time.Millisecond
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 5 * time.Second
	}
	if c.ScaleInterval <= 0 {
		c.ScaleInterval = time.Second
	}
	if c.QuietPeriod <= 0 {
		c.QuietPeriod = 30 * time.Second
	}
	if c.WatchInterval <= 0 {
		c.WatchInterval = 500 * time.Millisecond
	}
	if c.StatsInterval == 0 {
		c.StatsInterval = 2 * time.Second
	}
	return c
}

func defaultID() string {
	host, _ := os.Hostname()
	var b [3]byte
	_, _ = rand.Read(b[:])
	return sanitizeID(fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b[:])))
}

// sanitizeID keeps ids to characters that are safe in keys, logs and the
// task hash's token records.
func sanitizeID(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.' {
			return r
		}
		return '_'
	}, s)
}

// lifecycle is where a Satellite is: Start moves it from created to
// running, Stop from running to stopped; neither goes back.
type lifecycle int

const (
	created lifecycle = iota
	running
	stopped
)

// Satellite is one worker process's runtime: for each step it serves it
// runs a pool of workers reading the step's streams through the step's
// consumer group, the state-machine wrapper around each handler call, and
// the background loops that keep the system healthy: reclaiming tokens of
// dead satellites, promoting due retries, heartbeats and autoscaling.
type Satellite struct {
	c     *dsat.Client
	mux   *Mux
	cfg   Config
	log   zerolog.Logger
	steps []*stepRunner
	parts []partitionRef // every served partition, for the promoter
	// sweeps: the time keeping of the served partitions (promoteLoop).
	sweeps                          []timeSweep
	start                           time.Time
	jobs                            *jobTable
	logs                            logLimiter
	tracer                          trace.Tracer // nil: tracing off
	mu                              sync.Mutex
	done                            chan struct{} // closed when Stop has finished
	state                           lifecycle
	loops                           sync.WaitGroup
	work                            sync.WaitGroup // handler runs
	runnerGoroutines                sync.WaitGroup // handler goroutines, reused across runs (runners)
	stopLoops, stopWork, stopEngine context.CancelFunc
	loopCtx, workCtx, engineCtx     context.Context
}

type partitionRef struct {
	p    *dsat.Pipeline
	part dsat.Partition
}

// New checks that every served step has a registered handler (and valid
// settings) and returns a satellite ready to Start.
func New(c *dsat.Client, mux *Mux, cfg Config) (*Satellite, error) {
	cfg = cfg.withDefaults()
	s := &Satellite{c: c, mux: mux, cfg: cfg, jobs: newJobTable()}
	s.cfg.ID = sanitizeID(cfg.ID)
	s.log = cfg.Logger.With().Str("satellite", s.cfg.ID).Logger()
	if cfg.TracerProvider != nil {
		s.tracer = cfg.TracerProvider.Tracer(tracerName)
	}
	if s.cfg.MaxPayload <= 0 {
		s.cfg.MaxPayload = c.Config().MaxPayload
	}
	var errs []error
	served := 0
	for _, p := range c.Pipelines() {
		hosted := false
		for _, name := range p.Order {
			if !s.serves(p.Name, name) {
				continue
			}
			st := p.Steps[name]
			if err := mux.checkStep(p, st, nil); err != nil {
				errs = append(errs, err)
				continue
			}
			r := newStepRunner(s, p, st, nil)
			if st.Pipeline != "" { // a sub-pipeline step runs no handler (subpipe.go)
				s.steps = append(s.steps, r)
				hosted = true
				served++
				continue
			}
			h, opened, err := mux.stepHandler(st.Handler, StepInfo{Pipeline: p, Step: st, Satellite: s.cfg.ID, Logger: r.log})
			if err != nil {
				errs = append(errs, fmt.Errorf("%s: pipeline %s: step %q: %w", fileLine(p.File, st.Line), p.Name, st.Name, err))
				continue
			}
			r.h, r.opened = h, opened
			if b, ok := opened.(bounded); ok {
				r.bound(b.capacity())
			}
			s.steps = append(s.steps, r)
			hosted = true
			served++
		}
		if hosted {
			steps := queueTimeoutSteps(p, func(step string) bool { return s.serves(p.Name, step) })
			for n := 0; n < p.Partitions; n++ {
				s.parts = append(s.parts, partitionRef{p: p, part: p.Partition(n)})
				s.sweeps = append(s.sweeps, timeSweep{part: p.Partition(n), steps: steps, children: p.HasSubPipelines()})
			}
		}
	}
	if err := errors.Join(errs...); err != nil {
		_ = s.closeSteps(context.Background(), time.Now().Add(cfg.ShutdownTimeout))
		return nil, err
	}
	if served == 0 {
		return nil, fmt.Errorf("workers: no step to serve (steps filter %v matches none of the loaded pipelines)", cfg.Steps)
	}
	return s, nil
}

func (s *Satellite) serves(pipeline, step string) bool {
	if len(s.cfg.Steps) == 0 {
		return true
	}
	for _, f := range s.cfg.Steps {
		if f == pipeline || f == pipeline+"/"+step {
			return true
		}
	}
	return false
}

// ID returns the satellite's id (its consumer name).
func (s *Satellite) ID() string { return s.cfg.ID }

// Start creates the consumer groups it needs and starts every loop. It
// returns once running; the loops run until Stop, or until ctx ends, which
// stops the satellite as Stop does. Redis errors at start are not fatal:
// the readers repair missing groups with backoff.
func (s *Satellite) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state != created {
		return errors.New("workers: satellite already started")
	}
	for _, r := range s.steps {
		// A failure here (Redis restarting, a lost connection) is not fatal:
		// each reader recreates its groups when it meets NOGROUP.
		if err := r.ensureGroups(ctx); err != nil {
			r.log.Warn().Err(err).Msg("could not create consumer groups yet; the reader will retry")
		}
	}
	s.state = running
	s.done = make(chan struct{})
	s.start = time.Now()
	s.loopCtx, s.stopLoops = context.WithCancel(context.Background())
	s.workCtx, s.stopWork = context.WithCancel(context.Background())
	s.engineCtx, s.stopEngine = context.WithCancel(context.Background())
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	s.applyPauses(pctx)
	s.applyPriorities(pctx)
	if s.hasBreakers() {
		s.applyBreakers(pctx)
	}
	cancel()
	for _, r := range s.steps {
		r.runners = newRunners(s.loopCtx.Done(), &s.runnerGoroutines, r.run)
		s.goLoop(r.readLoop)
	}
	s.goLoop(s.promoteLoop)
	s.goLoop(s.heartbeatLoop)
	s.goLoop(s.scaleLoop)
	s.goLoop(s.watchLoop)
	s.goLoop(s.flowLoop)
	if s.cfg.StatsInterval > 0 {
		s.goLoop(s.statsLoop)
	}
	go s.stopWhenDone(ctx)
	s.log.Info().Int("steps", len(s.steps)).Msg("satellite started")
	return nil
}

// stopWhenDone stops the satellite (gracefully, as Stop does) when the
// context given to Start ends; it returns once the satellite has stopped.
func (s *Satellite) stopWhenDone(ctx context.Context) {
	select {
	case <-ctx.Done():
		s.log.Info().Msg("the satellite's context ended; stopping")
		if err := s.Stop(context.Background()); err != nil {
			s.log.Warn().Err(err).Msg("satellite stop")
		}
	case <-s.done:
	}
}

func (s *Satellite) goLoop(f func(ctx context.Context)) {
	s.loops.Add(1)
	go func() {
		defer s.loops.Done()
		f(s.loopCtx)
	}()
}

// cancelGrace is how long Stop waits for cancelled handlers to return.
const cancelGrace = 2 * time.Second

// Stop shuts down gracefully: it stops reading, lets running handlers
// finish until the shutdown timeout (or ctx) ends, then cancels them and
// leaves their tokens un-acknowledged for the reclaimer. It returns once
// every goroutine of the satellite has exited, or, when a handler ignores
// its cancelled context, cancelGrace later: that handler's token stays
// pending for the reclaimer, and the log names it.
func (s *Satellite) Stop(ctx context.Context) error {
	s.mu.Lock()
	switch s.state {
	case created:
		s.mu.Unlock()
		return nil
	case stopped: // stopping or stopped: wait for it
		s.mu.Unlock()
		select {
		case <-s.done:
			return nil
		case <-ctx.Done():
			return fmt.Errorf("workers: stop: %w while the satellite was stopping", ctx.Err())
		}
	}
	s.state = stopped
	s.mu.Unlock()
	defer close(s.done)
	stopAt := time.Now()
	s.stopLoops()
	s.loops.Wait() // readers and background loops have returned
	done := make(chan struct{})
	go func() { s.work.Wait(); close(done) }()
	timer := time.NewTimer(s.cfg.ShutdownTimeout)
	defer timer.Stop()
	var err error
	select {
	case <-done:
	case <-timer.C:
		err = errors.New("workers: shutdown timeout: running handlers cancelled, their tokens stay pending for the reclaimer")
	case <-ctx.Done():
		err = fmt.Errorf("workers: stop: %w; running handlers cancelled", ctx.Err())
	}
	s.stopWork()
	grace := time.NewTimer(cancelGrace)
	defer grace.Stop()
	select {
	case <-done:
		s.runnerGoroutines.Wait() // idle ones exit as reading has stopped
	case <-grace.C:
		for _, j := range s.jobs.snapshot() {
			j.r.log.Error().Str("task", j.d.Task).Str("token", j.d.Token).
				Msg("handler ignored its cancellation; left running, its token stays pending for the reclaimer")
		}
		err = errors.Join(err, errors.New("workers: stop: some handlers ignored their cancellation (see the log); their tokens stay pending for the reclaimer"))
	}
	// Handlers that hold something per step (process: child processes)
	// release it within what is left of the shutdown timeout.
	err = errors.Join(err, s.closeSteps(ctx, stopAt.Add(s.cfg.ShutdownTimeout)))
	if s.cfg.StatsInterval > 0 {
		s.flushStats(s.engineCtx, time.Now()) // the last handlers' counts
	}
	s.stopEngine()
	s.removeHeartbeat()
	s.log.Info().Msg("satellite stopped")
	return err
}
