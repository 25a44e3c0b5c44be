package workers

import (
	"context"
	"errors"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
)

// StepOpener is implemented by handlers that hold something for each step
// a satellite serves, such as the process handler's pool of child
// processes. The satellite calls OpenStep once per served step when it is
// made, runs that step's tokens through the returned handler (inside the
// Mux's middleware) and closes it when it stops. A satellite that is made
// but never started closes nothing: OpenStep must not start anything (do
// it at the first token).
type StepOpener interface {
	OpenStep(s StepInfo) (StepHandler, error)
}

// StepHandler is a handler bound to one step of one satellite. Close
// releases what it holds; the satellite calls it once, after the step's
// handlers have returned (or been cancelled), with a context that ends at
// the satellite's shutdown timeout.
type StepHandler interface {
	Handler
	Close(ctx context.Context) error
}

// StepInfo is what a StepOpener learns about the step it serves.
type StepInfo struct {
	Pipeline  *dsat.Pipeline
	Step      *dsat.Step
	Satellite string
	// Logger is the step's logger (satellite, pipeline and step fields).
	Logger zerolog.Logger
}

// bounded is implemented by a StepHandler that runs at most capacity()
// tokens at once (process: processes × inflight). The satellite keeps the
// step's pool to it: more tokens would only wait, using up their timeout.
type bounded interface {
	capacity() int
}

// stepHandler returns the handler for one served step: the registered one
// inside the middleware, opened for the step when it is a StepOpener (then
// the second result is what Stop closes).
func (m *Mux) stepHandler(name string, info StepInfo) (Handler, StepHandler, error) {
	opener, ok := m.raw(name).(StepOpener)
	if !ok {
		h, _ := m.Lookup(name)
		return h, nil, nil
	}
	sh, err := opener.OpenStep(info)
	if err != nil {
		return nil, nil, err
	}
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.wrapLocked(sh), sh, nil
}

// closeSteps closes the steps' opened handlers (stepHandler), all at once,
// with ctx ending at deadline.
func (s *Satellite) closeSteps(ctx context.Context, deadline time.Time) error {
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	errs := make(chan error, len(s.steps))
	n := 0
	for _, r := range s.steps {
		if r.opened == nil {
			continue
		}
		n++
		go func() { errs <- r.opened.Close(ctx) }()
	}
	var all []error
	for ; n > 0; n-- {
		all = append(all, <-errs)
	}
	return errors.Join(all...)
}
