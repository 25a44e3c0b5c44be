package workers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// Handler runs one step of a task. It returns the step's output, or an
// error: the token is retried with backoff while attempts remain, unless
// the error is SkipRetry (straight to the dead letters) or a Snooze.
type Handler interface {
	Handle(ctx context.Context, t *dsat.Task) (dsat.Result, error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, t *dsat.Task) (dsat.Result, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, t *dsat.Task) (dsat.Result, error) { return f(ctx, t) }

// Middleware wraps a Handler (logging, tracing, metrics...).
type Middleware func(Handler) Handler

// SkipRetry, returned (or wrapped) by a handler, sends the token straight to
// the dead letters without using its remaining attempts.
//
//lint:ignore ST1012 the name users of asynq know; it reads as an instruction.
var SkipRetry = errors.New("skip retry")

// SnoozeError asks for the token to run again after Delay without using up
// an attempt. Make one with Snooze.
type SnoozeError struct{ Delay time.Duration }

func (e *SnoozeError) Error() string { return fmt.Sprintf("snooze %s", e.Delay) }

// Snooze returns an error that re-queues the token after d (at least 1 ms)
// without counting an attempt.
func Snooze(d time.Duration) error {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return &SnoozeError{Delay: d}
}

// Mux maps handler names (the handler: field of a step) to handlers, like
// routes on an http.ServeMux. It is safe for concurrent use.
type Mux struct {
	mu         sync.RWMutex
	handlers   map[string]Handler
	middleware []Middleware
}

// NewMux returns an empty Mux.
func NewMux() *Mux { return &Mux{handlers: map[string]Handler{}} }

// Handle registers h under name; it panics when the name is taken or
// empty, as http.ServeMux does, since that is a programming error.
func (m *Mux) Handle(name string, h Handler) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if name == "" || h == nil {
		panic("workers: Handle needs a name and a handler")
	}
	if _, dup := m.handlers[name]; dup {
		panic("workers: handler " + name + " registered twice")
	}
	m.handlers[name] = h
}

// HandleFunc registers a function as a handler.
func (m *Mux) HandleFunc(name string, f func(ctx context.Context, t *dsat.Task) (dsat.Result, error)) {
	m.Handle(name, HandlerFunc(f))
}

// Use adds middleware applied to every handler, first added outermost.
func (m *Mux) Use(mw ...Middleware) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.middleware = append(m.middleware, mw...)
}

// Lookup returns the handler registered under name, wrapped in the
// middleware.
func (m *Mux) Lookup(name string) (Handler, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	h, ok := m.handlers[name]
	if !ok {
		return nil, false
	}
	return m.wrapLocked(h), true
}

// wrapLocked wraps h in the middleware, first added outermost; m.mu is
// held.
func (m *Mux) wrapLocked(h Handler) Handler {
	for i := len(m.middleware) - 1; i >= 0; i-- {
		h = m.middleware[i](h)
	}
	return h
}

// raw returns the handler registered under name, without middleware.
func (m *Mux) raw(name string) Handler {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.handlers[name]
}

// Names lists the registered handler names, sorted.
func (m *Mux) Names() []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]string, 0, len(m.handlers))
	for n := range m.handlers {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// UnknownHandlerError names a step whose handler is not registered.
type UnknownHandlerError struct {
	File, Pipeline, Step, Handler string
	Line                          int
	Known                         []string
}

func (e *UnknownHandlerError) Error() string {
	return fmt.Sprintf("%s: pipeline %s: step %q: field \"handler\": no handler named %q is registered in this binary (registered: %v)",
		fileLine(e.File, e.Line), e.Pipeline, e.Step, e.Handler, e.Known)
}

// fileLine is "file:line", or the file alone when the line is unknown.
func fileLine(file string, line int) string {
	if line > 0 {
		return fmt.Sprintf("%s:%d", file, line)
	}
	return file
}

// Check returns an error for every step of the pipelines whose handler is
// not registered (unless its name is in external: handlers a worker binary
// of the user's own registers) or whose settings (with:) the registered
// handler refuses. Each error names the file, pipeline and step.
func (m *Mux) Check(pipelines []*dsat.Pipeline, external ...string) error {
	var errs []error
	for _, p := range pipelines {
		for _, s := range p.Order {
			if err := m.checkStep(p, p.Steps[s], external); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkStep checks one step's handler and settings.
func (m *Mux) checkStep(p *dsat.Pipeline, st *dsat.Step, external []string) error {
	if st.Pipeline != "" {
		return nil // a sub-pipeline step: no handler
	}
	if _, ok := m.Lookup(st.Handler); !ok {
		if slices.Contains(external, st.Handler) {
			return nil
		}
		return &UnknownHandlerError{File: p.File, Line: st.Line, Pipeline: p.Name, Step: st.Name, Handler: st.Handler, Known: m.Names()}
	}
	if raw, ok := m.raw(st.Handler).(SettingsValidator); ok {
		if err := raw.ValidateSettings(st.With); err != nil {
			return fmt.Errorf("%s: pipeline %s: step %q: field \"with\": %w", fileLine(p.File, st.Line), p.Name, st.Name, err)
		}
	}
	return nil
}
