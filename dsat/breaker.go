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
	// BreakerClosed is only ever the state of a BREAKER event.
	BreakerClosed = "closed"
)

// BreakerState is the state of a step's circuit breaker that is not
// closed: open until Until, or half open (one probe token runs; its lease
// ends at Until).
type BreakerState struct {
	State string `json:"state"`
	Until Time   `json:"until"`
}

// BreakerDetail is the detail of a BREAKER event: the state the breaker
// moved to, and until when (absent for closed).
type BreakerDetail struct {
	State string `json:"state"`
	Until *Time  `json:"until,omitempty"`
}

// breakerCall runs breaker.lua for step of pipeline.
func (c *Client) breakerCall(ctx context.Context, pipeline, step string, args ...any) (any, error) {
	keys := []string{c.keys.Breakers(), c.keys.BreakerFailures(pipeline, step), c.keys.BreakerTransitions()}
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

// BreakerFailed counts a failed attempt of step, seen by the satellite
// who, and reports whether the breaker opened now (a failed probe opens it
// again); an opening is published on the firehose (PublishBreaker). An
// error with opened true means only the event could not be written.
func (c *Client) BreakerFailed(ctx context.Context, pipeline, step, who string) (opened bool, err error) {
	b, err := c.breakerOf(pipeline, step)
	if err != nil {
		return false, err
	}
	now := c.cfg.Now()
	r, err := c.breakerCall(ctx, pipeline, step, "fail", pipeline+"/"+step, ms(now), b.Failures,
		b.Within.Milliseconds(), b.OpenFor.Milliseconds())
	if r != "opened" || err != nil {
		return false, err
	}
	return true, c.PublishBreaker(ctx, pipeline, step, who, BreakerState{State: BreakerOpen, Until: Time{Time: now.Add(b.OpenFor).UTC()}}, now)
}

// BreakerSucceeded records a successful attempt of step, by the satellite
// who, while its breaker is not closed, and reports whether that closed it
// (a probe succeeded); a closing is published on the firehose (an error
// with closed true: only the event could not be written).
func (c *Client) BreakerSucceeded(ctx context.Context, pipeline, step, who string) (closed bool, err error) {
	now := c.cfg.Now()
	r, err := c.breakerCall(ctx, pipeline, step, "ok", pipeline+"/"+step, ms(now))
	if r != "closed" || err != nil {
		return false, err
	}
	return true, c.PublishBreaker(ctx, pipeline, step, who, BreakerState{State: BreakerClosed}, now)
}

// BreakerProbe asks to run the one probe token of an open breaker whose
// time is up (or whose last prober's lease ran out); true: the caller, who,
// runs it now and holds the probe for lease. The move to half open, also a
// takeover of an expired lease, is published on the firehose (an error with true: only the event
// could not be written; the caller holds the probe).
func (c *Client) BreakerProbe(ctx context.Context, pipeline, step, who string, lease time.Duration) (bool, error) {
	now := c.cfg.Now()
	r, err := c.breakerCall(ctx, pipeline, step, "probe", pipeline+"/"+step, ms(now), who, lease.Milliseconds())
	n, _ := r.(int64)
	if n > 0 && err == nil { // half open now, or again (a takeover of an expired lease): by who
		return true, c.PublishBreaker(ctx, pipeline, step, who, BreakerState{State: BreakerHalfOpen, Until: Time{Time: now.Add(lease).UTC()}}, now)
	}
	return n > 0, err
}

// Breakers returns every breaker that is not closed, by "pipeline/step".
// A half-open breaker whose probe lease ran out (its prober died, or the
// step had no token to probe with) shows as open with that lease's end as
// Until, in the past: a probe is due, the next satellite to read a token
// of the step takes it.
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
		if parts[0] == "h" && st.Until.After(c.cfg.Now()) {
			st.State = BreakerHalfOpen
		}
		out[f] = st
	}
	return out, nil
}
