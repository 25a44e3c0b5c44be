package workers

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// SettingsValidator is implemented by handlers that check a step's with:
// settings at start-up, so a typo fails the satellite's start, not every
// task.
type SettingsValidator interface {
	ValidateSettings(with map[string]any) error
}

// RegisterBuiltins registers the stock handlers on m: echo, sleep, fail,
// exec and process. maxOutput bounds exec's and process's output (0 means
// dsat.DefaultMaxPayload).
func RegisterBuiltins(m *Mux, maxOutput int) {
	if maxOutput <= 0 {
		maxOutput = dsat.DefaultMaxPayload
	}
	m.Handle("echo", HandlerFunc(Echo))
	m.Handle("sleep", sleepHandler{})
	m.Handle("fail", failHandler{})
	m.Handle("exec", &ExecHandler{MaxOutput: maxOutput})
	m.Handle("process", &ProcessHandler{MaxOutput: maxOutput})
}

// Echo outputs its input.
func Echo(_ context.Context, t *dsat.Task) (dsat.Result, error) {
	return dsat.Result{Output: t.Payload}, nil
}

// sleepHandler waits with: {ms: N} milliseconds (honouring cancellation and
// the step timeout), then echoes.
type sleepHandler struct{}

func (sleepHandler) ValidateSettings(with map[string]any) error {
	_, err := intSetting(with, "ms", 0, 0, 24*3600*1000)
	return err
}

func (sleepHandler) Handle(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
	n, err := intSetting(t.With, "ms", 0, 0, 24*3600*1000)
	if err != nil {
		return dsat.Result{}, fmt.Errorf("%w: %v", SkipRetry, err)
	}
	timer := time.NewTimer(time.Duration(n) * time.Millisecond)
	defer timer.Stop()
	select {
	case <-timer.C:
		return dsat.Result{Output: t.Payload}, nil
	case <-ctx.Done():
		return dsat.Result{}, ctx.Err()
	}
}

// failHandler fails a share of attempts, for demos and tests:
// with: {rate: 0..1} fails that share at random; {attempts: N} fails the
// first N attempts of each token; {message: text} sets the error;
// {panic: true} panics instead of returning the error. Otherwise it echoes.
type failHandler struct{}

func (failHandler) ValidateSettings(with map[string]any) error {
	if _, err := floatSetting(with, "rate", 1, 0, 1); err != nil {
		return err
	}
	_, err := intSetting(with, "attempts", 0, 0, 1000)
	return err
}

func (failHandler) Handle(_ context.Context, t *dsat.Task) (dsat.Result, error) {
	rate, err := floatSetting(t.With, "rate", 1, 0, 1)
	if err != nil {
		return dsat.Result{}, fmt.Errorf("%w: %v", SkipRetry, err)
	}
	first, _ := intSetting(t.With, "attempts", 0, 0, 1000)
	msg, _ := t.With["message"].(string)
	if msg == "" {
		msg = fmt.Sprintf("fail handler: attempt %d failed on purpose", t.Attempt)
	}
	fails := t.Attempt <= first
	if _, set := t.With["attempts"]; !set {
		fails = rand.Float64() < rate
	}
	if fails {
		if p, _ := t.With["panic"].(bool); p {
			panic(msg)
		}
		return dsat.Result{}, fmt.Errorf("%s", msg)
	}
	return dsat.Result{Output: t.Payload}, nil
}

func intSetting(with map[string]any, key string, def, lo, hi int) (int, error) {
	v, ok := with[key]
	if !ok {
		return def, nil
	}
	n, isInt := v.(int)
	if !isInt || n < lo || n > hi {
		return 0, fmt.Errorf("with.%s must be a whole number from %d to %d, got %v", key, lo, hi, v)
	}
	return n, nil
}

func floatSetting(with map[string]any, key string, def, lo, hi float64) (float64, error) {
	v, ok := with[key]
	if !ok {
		return def, nil
	}
	var f float64
	switch x := v.(type) {
	case int:
		f = float64(x)
	case float64:
		f = x
	default:
		return 0, fmt.Errorf("with.%s must be a number from %g to %g, got %v", key, lo, hi, v)
	}
	if f < lo || f > hi {
		return 0, fmt.Errorf("with.%s must be a number from %g to %g, got %v", key, lo, hi, v)
	}
	return f, nil
}
