package workers

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
)

// SchedulerConfig tunes a Scheduler. The zero value is usable.
type SchedulerConfig struct {
	// Logger receives the firings and errors; the zero value logs nothing.
	Logger zerolog.Logger
	// Interval is how often due schedules are looked for: one
	// ZRANGEBYSCORE when none is due. A slot's task is submitted within
	// about this long after its run time. Default 500ms.
	Interval time.Duration
	// FiringTimeout bounds one round of firings (its Redis calls and
	// submissions), which a stop lets finish. Default 10s.
	FiringTimeout time.Duration
}

func (c SchedulerConfig) withDefaults() SchedulerConfig {
	if c.Interval <= 0 {
		c.Interval = 500 * time.Millisecond
	}
	if c.FiringTimeout <= 0 {
		c.FiringTimeout = 10 * time.Second
	}
	return c
}

// Scheduler fires the schedules stored in Redis when their slots come
// (dsat.Client.FireSchedules). dsat serve, worker and dev each run one;
// any number may run at once with no leader: each slot still makes one
// task.
type Scheduler struct {
	c       *dsat.Client
	cfg     SchedulerConfig
	log     zerolog.Logger
	limiter logLimiter
	mu      sync.Mutex
	stop    context.CancelFunc
	done    chan struct{}
}

// NewScheduler returns a scheduler for the client's pipelines: it fires
// the schedules of the pipelines the client has loaded.
func NewScheduler(c *dsat.Client, cfg SchedulerConfig) *Scheduler {
	cfg = cfg.withDefaults()
	return &Scheduler{c: c, cfg: cfg, log: cfg.Logger.With().Str("component", "scheduler").Logger()}
}

// Start runs the scheduler's loop in a goroutine until Stop, or until ctx
// ends. It returns at once.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done != nil {
		return errors.New("workers: scheduler already started")
	}
	ctx, s.stop = context.WithCancel(ctx)
	s.done = make(chan struct{})
	go func() {
		defer close(s.done)
		every(ctx, s.cfg.Interval, s.fire)
	}()
	return nil
}

// Stop ends the loop and returns once it has exited. A round of firings
// in progress finishes first (at most FiringTimeout): a firing cut between
// its claim and its tasks would only be taken over by another process
// after dsat.ScheduleLease.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	stop, done := s.stop, s.done
	s.mu.Unlock()
	if done == nil {
		return
	}
	stop()
	<-done
}

// fire fires every due schedule once. It runs to its end even when ctx
// ends meanwhile (bounded by FiringTimeout).
func (s *Scheduler) fire(ctx context.Context) {
	if ctx.Err() != nil {
		return
	}
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.FiringTimeout)
	defer cancel()
	firings, err := s.c.FireSchedules(fctx)
	if err != nil {
		s.limiter.write("fire", s.log.Warn().Err(err), "firing schedules failed")
	}
	for _, f := range firings {
		ev := s.log.Debug()
		switch {
		case f.Err != nil:
			s.limiter.write("fire/"+f.Schedule, s.log.Warn().Err(f.Err).Str("schedule", f.Schedule), "schedule firing stopped before every slot had its task")
			continue
		case f.Skipped > 0:
			ev = s.log.Info()
		}
		ev = ev.Str("schedule", f.Schedule).Int("tasks", len(f.Tasks)).Int("skipped", f.Skipped)
		if n := len(f.Tasks); n > 0 {
			ev = ev.Str("task", f.Tasks[n-1]).Time("slot", f.Slots[n-1])
		}
		ev.Msg("schedule fired")
	}
}
