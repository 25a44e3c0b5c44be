package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
)

// ProcessHandler runs a step's tokens through long-lived child processes,
// so a step written in any language loads its libraries (or its model)
// once, not once per token as with exec. Settings: with: {command: [argv...],
// processes: N, inflight: M} plus exec's env, dir and inherit_env (same
// meaning, same environment rules; no DSAT_TASK or DSAT_ATTEMPT, the
// process serves many tasks: it gets DSAT_PIPELINE and DSAT_STEP); every
// other key is passed to the process as "settings".
//
// Each satellite keeps, per step, a pool of `processes` children (default
// 1), started at the step's first token. They speak JSON lines: dsat
// writes one request per line on stdin,
//
//	{"id": "7", "task": "...", "pipeline": "...", "step": "...", "attempt": 1, "payload": <JSON>, "settings": {...}}
//
// and the process answers on stdout, one line per request, in any order:
//
//	{"id": "7", "output": <JSON>}
//	{"id": "7", "error": "text", "retry": false}   (retry defaults to true; false: straight to the dead letters)
//
// It may send {"id": "7", "progress": 0.4, "message": "11/54 pages"} lines
// before its answer: progress reports (see Progress). A process
// holds at most `inflight` requests (default 1); the step's concurrency is
// kept to processes × inflight. stderr lines go to the satellite's log.
//
// A process that exits, breaks the protocol (a line that is not a JSON
// answer, an unknown id, a line longer than the max output and 1 KiB) or
// holds a request past the step timeout is killed (its process group) and
// restarted; its requests fail as an attempt. Restarts back off from 100ms
// to 30s unless the process answered or lived 10s. A cancelled task's
// request is abandoned (its answer dropped); the process is not
// interrupted unless the step timeout passes. At Stop, stdin is closed and
// the processes get until the shutdown timeout to exit, then are killed.
type ProcessHandler struct {
	// MaxOutput bounds an answer's output (0: dsat.DefaultMaxPayload).
	MaxOutput int
}

// processSettingNames are the settings the process handler itself reads;
// every other key of with: goes to the process.
var processSettingNames = append(slices.Clone(execSettingNames), "processes", "inflight")

// Limits of the process handler.
const (
	maxProcesses   = 256
	maxInflight    = 1024
	answerOverhead = 1024 // an answer line's room beyond the output
	// minRestart and maxRestart bound the delay before a process that
	// ended without having answered (and within healthyAfter) is started
	// again; each such end doubles it.
	minRestart   = 100 * time.Millisecond
	maxRestart   = 30 * time.Second
	healthyAfter = 10 * time.Second
)

type processSettings struct {
	execSettings
	processes, inflight int
	rest                json.RawMessage // the other keys, for the process
}

func parseProcessSettings(with map[string]any) (processSettings, error) {
	var s processSettings
	var err error
	if s.execSettings, err = parseCommandSettings(with); err != nil {
		return s, err
	}
	if s.processes, err = intSetting(with, "processes", 1, 1, maxProcesses); err != nil {
		return s, err
	}
	if s.inflight, err = intSetting(with, "inflight", 1, 1, maxInflight); err != nil {
		return s, err
	}
	rest := map[string]any{}
	for k, v := range with {
		if !slices.Contains(processSettingNames, k) {
			rest[k] = v
		}
	}
	if s.rest, err = json.Marshal(rest); err != nil {
		return s, fmt.Errorf("with: the settings passed to the process must be plain values: %w", err)
	}
	return s, nil
}

// ValidateSettings checks command, env, dir, inherit_env, processes and
// inflight.
func (h *ProcessHandler) ValidateSettings(with map[string]any) error {
	_, err := parseProcessSettings(with)
	return err
}

// Handle refuses: the processes belong to a step of a satellite, which
// runs its tokens through OpenStep's handler.
func (h *ProcessHandler) Handle(context.Context, *dsat.Task) (dsat.Result, error) {
	return dsat.Result{}, fmt.Errorf("%w: the process handler runs in a satellite (workers.New), which keeps its processes per step", SkipRetry)
}

// OpenStep returns the step's pool of processes; none is started before
// the step's first token.
func (h *ProcessHandler) OpenStep(info StepInfo) (StepHandler, error) {
	s, err := parseProcessSettings(info.Step.With)
	if err != nil {
		return nil, err
	}
	maxOut := h.MaxOutput
	if maxOut <= 0 {
		maxOut = dsat.DefaultMaxPayload
	}
	return &procPool{
		s: s, maxOutput: maxOut, timeout: info.Step.Timeout, log: info.Logger,
		env:   s.environ("DSAT_PIPELINE="+info.Pipeline.Name, "DSAT_STEP="+info.Step.Name),
		slots: make([]*procSlot, s.processes), changed: make(chan struct{}), stop: make(chan struct{}),
	}, nil
}

// procPool is one step's processes on one satellite (a StepHandler). Each
// slot has a supervisor goroutine that starts its process, waits for its
// end and starts it again; the pool's WaitGroup owns the supervisors, each
// supervisor its process's goroutines (child).
type procPool struct {
	s         processSettings
	env       []string
	maxOutput int
	timeout   time.Duration
	log       zerolog.Logger
	ids       atomic.Uint64

	mu       sync.Mutex
	slots    []*procSlot
	changed  chan struct{} // closed (and replaced) when a process starts, ends or frees room
	started  bool
	closing  bool
	lastDown error         // why the last process ended
	stop     chan struct{} // closed by Close: no more starts
	wg       sync.WaitGroup
}

// procSlot is one place of the pool: its running process, or (child nil)
// when the next one starts.
type procSlot struct {
	n         int
	child     *child
	restartAt time.Time
}

// call is one request in flight.
type call struct {
	id        string
	ctx       context.Context // the handler's (its logger)
	task      *dsat.Task
	placed    time.Time       // when a process got it
	done      chan callResult // buffered: the answer, or why there is none
	abandoned bool            // the handler returned (ctx ended); under mu
	timer     *time.Timer     // an abandoned call's step timeout; under mu
}

type callResult struct {
	output json.RawMessage
	err    error
}

// errPoolClosed: the satellite is stopping.
var errPoolClosed = errors.New("the step's processes are stopping with the satellite")

func (p *procPool) capacity() int { return p.s.processes * p.s.inflight }

// Handle sends the token to a process with room and waits for its answer.
func (p *procPool) Handle(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
	cl := &call{id: strconv.FormatUint(p.ids.Add(1), 10), ctx: ctx, task: t, done: make(chan callResult, 1)}
	line, err := p.request(cl.id, t)
	if err != nil {
		return dsat.Result{}, err
	}
	c, err := p.place(ctx, cl, line)
	if err != nil {
		return dsat.Result{}, err
	}
	select {
	case r := <-cl.done:
		return dsat.Result{Output: r.output}, r.err
	case <-ctx.Done():
		p.abandon(c, cl)
		return dsat.Result{}, ctx.Err()
	}
}

// requestLine is what the process reads for one token.
type requestLine struct {
	ID       string          `json:"id"`
	Task     string          `json:"task"`
	Pipeline string          `json:"pipeline"`
	Step     string          `json:"step"`
	Attempt  int             `json:"attempt"`
	Payload  json.RawMessage `json:"payload"`
	Settings json.RawMessage `json:"settings"`
	// Traceparent is the step attempt's W3C trace context (with tracing
	// on: its span), absent when the task has none.
	Traceparent string `json:"traceparent,omitempty"`
}

// request encodes the token's request line (a payload that is not JSON
// goes as a JSON string).
func (p *procPool) request(id string, t *dsat.Task) ([]byte, error) {
	payload := json.RawMessage(t.Payload)
	if !json.Valid(payload) {
		payload, _ = json.Marshal(string(t.Payload))
	}
	b, err := json.Marshal(requestLine{ID: id, Task: t.ID, Pipeline: t.Pipeline, Step: t.Step, Attempt: t.Attempt,
		Payload: payload, Settings: p.s.rest, Traceparent: t.Trace})
	if err != nil {
		return nil, fmt.Errorf("encode the request: %w", err)
	}
	return append(b, '\n'), nil
}

// place gives the call to the process with the fewest requests and room
// for one more, starting the pool at its first call; it waits while every
// process is full or about to start.
func (p *procPool) place(ctx context.Context, cl *call, line []byte) (*child, error) {
	for {
		p.mu.Lock()
		if p.closing {
			p.mu.Unlock()
			return nil, errPoolClosed
		}
		if err := ctx.Err(); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		p.startLocked()
		if c := p.pickLocked(); c != nil {
			cl.placed = time.Now()
			c.pending[cl.id] = cl
			c.in <- line // never blocks: it holds up to inflight lines
			p.mu.Unlock()
			return c, nil
		}
		err := p.unavailableLocked(ctx)
		wake := p.changed
		p.mu.Unlock()
		if err != nil {
			return nil, err
		}
		select {
		case <-wake:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// startLocked starts the slots' supervisors, once.
func (p *procPool) startLocked() {
	if p.started {
		return
	}
	p.started = true
	now := time.Now()
	for i := range p.slots {
		p.slots[i] = &procSlot{n: i, restartAt: now}
		p.wg.Add(1)
		go p.supervise(p.slots[i])
	}
}

func (p *procPool) pickLocked() *child {
	var best *child
	for _, sl := range p.slots {
		c := sl.child
		if c == nil || c.killed != "" || len(c.pending) >= p.s.inflight {
			continue
		}
		if best == nil || len(c.pending) < len(best.pending) {
			best = c
		}
	}
	return best
}

// unavailableLocked says why a call cannot wait for a process: none runs
// and the next start is after the call's deadline (or cannot succeed). nil:
// wait.
func (p *procPool) unavailableLocked(ctx context.Context) error {
	var next time.Time
	for _, sl := range p.slots {
		if sl.child != nil {
			return nil // full, or ending: it frees room or restarts soon
		}
		if next.IsZero() || sl.restartAt.Before(next) {
			next = sl.restartAt
		}
	}
	switch deadline, ok := ctx.Deadline(); {
	case p.lastDown == nil:
		return nil // the first start
	case errors.Is(p.lastDown, SkipRetry):
		return p.lastDown
	case ok && next.After(deadline):
		return fmt.Errorf("no process running (the last one: %w); the next starts in %s", p.lastDown, time.Until(next).Round(time.Millisecond))
	}
	return nil
}

// broadcastLocked wakes the calls waiting in place.
func (p *procPool) broadcastLocked() {
	close(p.changed)
	p.changed = make(chan struct{})
}

// abandon lets go of a call whose handler's context ended (timeout or
// cancellation): its answer will be dropped. The process is not
// interrupted, but once it has held the call for the step timeout it is
// hung: it is killed (at once, when the handler's own timeout was that).
func (p *procPool) abandon(c *child, cl *call) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c.pending[cl.id] != cl {
		return // answered (or failed) meanwhile
	}
	cl.abandoned = true
	deadline, ok := cl.placed.Add(p.timeout), p.timeout > 0
	if !ok {
		deadline, ok = cl.ctx.Deadline()
	}
	if !ok {
		return
	}
	cl.timer = time.AfterFunc(time.Until(deadline), func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if c.pending[cl.id] == cl {
			p.killLocked(c, p.timeoutReason())
		}
	})
}

func (p *procPool) timeoutReason() string {
	return fmt.Sprintf("process killed after the step timeout of %s", p.timeout)
}

// killLocked kills c's process group, once; reason is what its requests
// fail with.
func (p *procPool) killLocked(c *child, reason string) {
	if c.killed != "" {
		return
	}
	c.killed = reason
	c.log.Warn().Str("reason", reason).Msg("killing the process")
	c.kill()
}

// supervise runs one slot: start a process, wait for its end, fail what it
// held, start the next one after the restart delay; until Close.
func (p *procPool) supervise(sl *procSlot) {
	defer p.wg.Done()
	var delay time.Duration
	for {
		if delay > 0 && !p.pause(delay) {
			return
		}
		c, err := p.spawn(sl)
		if errors.Is(err, errPoolClosed) {
			return
		}
		if err != nil {
			delay = restartDelay(delay, false)
			p.log.Error().Err(err).Int("process", sl.n).Dur("restart_in", delay).Msg("could not start the process")
			if p.retire(sl, nil, err, delay) {
				return
			}
			continue
		}
		err = c.wait()
		delay = restartDelay(delay, c.answered.Load() || time.Since(c.started) >= healthyAfter)
		if p.retire(sl, c, err, delay) {
			return
		}
		c.log.Warn().Err(err).Dur("restart_in", delay).Msg("process ended; starting another")
	}
}

// restartDelay is the wait before the next start: none after a healthy
// process (one that answered, or lived healthyAfter), else doubling from
// minRestart to maxRestart.
func restartDelay(prev time.Duration, healthy bool) time.Duration {
	if healthy {
		return 0
	}
	return min(max(2*prev, minRestart), maxRestart)
}

// pause waits d, or until Close; it reports whether d passed.
func (p *procPool) pause(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-p.stop:
		return false
	}
}

// spawn starts the slot's process (under mu, so Close never misses one).
func (p *procPool) spawn(sl *procSlot) (*child, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closing {
		return nil, errPoolClosed
	}
	c, err := startChild(p, sl.n)
	if err != nil {
		return nil, err
	}
	sl.child = c
	p.broadcastLocked()
	return c, nil
}

// retire records that the slot's process (c, nil if it did not start)
// ended with err: its requests fail with err, the next start is due after
// delay. It reports whether the pool is closing.
func (p *procPool) retire(sl *procSlot, c *child, err error, delay time.Duration) bool {
	p.mu.Lock()
	var calls map[string]*call
	if c != nil {
		calls, c.pending = c.pending, nil
	}
	sl.child = nil
	sl.restartAt = time.Now().Add(delay)
	p.lastDown = err
	p.broadcastLocked()
	closing := p.closing
	for _, cl := range calls {
		if cl.timer != nil {
			cl.timer.Stop()
		}
		if !cl.abandoned {
			cl.done <- callResult{err: err}
		}
	}
	p.mu.Unlock()
	return closing
}

// Close closes the processes' stdin and waits for them to exit until ctx
// ends, then kills them; it returns once every goroutine of the pool has.
func (p *procPool) Close(ctx context.Context) error {
	p.mu.Lock()
	if p.closing {
		p.mu.Unlock()
		p.wg.Wait()
		return nil
	}
	p.closing = true
	close(p.stop)
	for _, sl := range p.slots {
		if sl != nil && sl.child != nil {
			close(sl.child.in) // the writer closes stdin once the lines queued are written
		}
	}
	p.broadcastLocked()
	p.mu.Unlock()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	p.mu.Lock()
	for _, sl := range p.slots {
		if sl != nil && sl.child != nil {
			p.killLocked(sl.child, "process killed: it did not exit within the shutdown timeout after its stdin was closed")
		}
	}
	p.mu.Unlock()
	<-done
	return nil
}
