package dsat

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/dsat-dev/dsat/lua"
)

// Breaker states, as BreakerState.State and in the API.
const (
	BreakerOpen     = "open"
	BreakerHalfOpen = "half_open"
)

// BreakerState is the state of a step's circuit breaker that is not
// closed: open until Until, or half open (one probe token runs; its lease
// ends at Until).
type BreakerState struct {
	State string `json:"state"`
	Until Time   `json:"until"`
}

// breakerCall runs breaker.lua for step of pipeline.
func (c *Client) breakerCall(ctx context.Context, pipeline, step string, args ...any) (any, error) {
	keys := []string{c.keys.Breakers(), c.keys.BreakerFailures(pipeline, step)}
	r, err := lua.Breaker.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: breaker of %s/%s: %w", pipeline, step, err)
	}
	return r, nil
}

// breakerOf returns the step's breaker settings, or an error for a step
// without one.
func (c *Client) breakerOf(pipeline, step string) (*Breaker, error) {
	p, err := c.Pipeline(pipeline)
	if err != nil {
		return nil, err
	}
	st, ok := p.Steps[step]
	if !ok {
		return nil, fmt.Errorf("%w: pipeline %s has no step %q", ErrStepNotFound, pipeline, step)
	}
	if st.Breaker == nil {
		return nil, fmt.Errorf("dsat: step %s/%s has no breaker", pipeline, step)
	}
	return st.Breaker, nil
}

// BreakerFailed counts a failed attempt of step and reports whether the
// breaker opened now (a failed probe opens it again).
func (c *Client) BreakerFailed(ctx context.Context, pipeline, step string) (opened bool, err error) {
	b, err := c.breakerOf(pipeline, step)
	if err != nil {
		return false, err
	}
	r, err := c.breakerCall(ctx, pipeline, step, "fail", pipeline+"/"+step, ms(c.cfg.Now()), b.Failures,
		b.Within.Milliseconds(), b.OpenFor.Milliseconds())
	return r == "opened", err
}

// BreakerSucceeded records a successful attempt of step while its breaker
// is not closed, and reports whether that closed it (a probe succeeded).
func (c *Client) BreakerSucceeded(ctx context.Context, pipeline, step string) (closed bool, err error) {
	r, err := c.breakerCall(ctx, pipeline, step, "ok", pipeline+"/"+step, ms(c.cfg.Now()))
	return r == "closed", err
}

// BreakerProbe asks to run the one probe token of an open breaker whose
// time is up (or whose last prober's lease ran out); true: the caller, who,
// runs it now and holds the probe for lease.
func (c *Client) BreakerProbe(ctx context.Context, pipeline, step, who string, lease time.Duration) (bool, error) {
	r, err := c.breakerCall(ctx, pipeline, step, "probe", pipeline+"/"+step, ms(c.cfg.Now()), who, lease.Milliseconds())
	n, _ := r.(int64)
	return n == 1, err
}

// Breakers returns every breaker that is not closed, by "pipeline/step".
func (c *Client) Breakers(ctx context.Context) (map[string]BreakerState, error) {
	m, err := c.rdb.HGetAll(ctx, c.keys.Breakers()).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: read breakers: %w", err)
	}
	out := make(map[string]BreakerState, len(m))
	for f, v := range m {
		parts := strings.Split(v, "|")
		until, _ := strconv.ParseInt(parts[len(parts)-1], 10, 64)
		st := BreakerState{State: BreakerOpen, Until: Time{Time: time.UnixMilli(until).UTC()}}
		if parts[0] == "h" {
			st.State = BreakerHalfOpen
		}
		out[f] = st
	}
	return out, nil
}
