package dsat

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dsat-dev/dsat/lua"
)

// Limits are a step's limits (limits: in YAML), over every satellite and
// partition together: at most Rate.Count tokens begun in any window of
// Rate.Per, at most Running tokens begun and not ended at once. A step
// with limits begins each token before its handler runs; a token that may
// not begin yet waits in its stream, read but not begun, using no attempt.
type Limits struct {
	Rate    Rate `json:"-"`
	Running int  `json:"running,omitempty"`
}

// Rate is a number of tokens per period (a second, a minute or an hour);
// the zero Rate is no rate limit.
type Rate struct {
	Count int
	Per   time.Duration
}

// MaxRateCount bounds a rate's count: the limiter keeps one member per
// grant of its last two windows.
const MaxRateCount = 100_000

// String gives the rate as written in YAML: "20/s", "100/m", "5/h".
func (r Rate) String() string {
	if r.Count == 0 {
		return ""
	}
	unit := map[time.Duration]string{time.Second: "s", time.Minute: "m", time.Hour: "h"}[r.Per]
	return strconv.Itoa(r.Count) + "/" + unit
}

// ParseRate reads "N/s", "N/m" or "N/h" with N from 1 to MaxRateCount.
func ParseRate(s string) (Rate, error) {
	n, unit, ok := strings.Cut(strings.TrimSpace(s), "/")
	per := map[string]time.Duration{"s": time.Second, "m": time.Minute, "h": time.Hour}[unit]
	c, err := strconv.Atoi(n)
	if !ok || per == 0 || err != nil || c < 1 || c > MaxRateCount {
		return Rate{}, fmt.Errorf("must be N/s, N/m or N/h with N a whole number from 1 to %d, got %q", MaxRateCount, s)
	}
	return Rate{Count: c, Per: per}, nil
}

// limitsFields are the fields of limits: in YAML; the per-key ones are
// recognized to say they are not supported yet.
var limitsFields = []string{"rate", "running", "key", "running_per_key", "rate_per_key"}

// limits reads a step's limits: mapping.
func (l *loader) limits(n *yaml.Node, s *Step) {
	f := l.fields(n, s.Name, "limits", limitsFields...)
	lim := &Limits{}
	if v, ok := f["rate"]; ok {
		r, err := ParseRate(v.Value)
		if err == nil && v.Kind != yaml.ScalarNode {
			r, err = Rate{}, fmt.Errorf("must be N/s, N/m or N/h, got a %s", v.Tag)
		}
		if err != nil {
			l.add(v.Line, s.Name, "limits.rate", err.Error())
		}
		lim.Rate = r
	}
	if v, ok := f["running"]; ok {
		lim.Running = l.intIn(v, s.Name, "limits.running", 1, 1_000_000)
	}
	for _, k := range []string{"key", "running_per_key", "rate_per_key"} {
		if v, ok := f[k]; ok {
			l.add(v.Line, s.Name, "limits."+k, "per-key limits are not supported yet: use rate and running (all keys together)")
		}
	}
	if _, r := f["rate"]; !r && n.Kind == yaml.MappingNode {
		if _, c := f["running"]; !c {
			l.add(n.Line, s.Name, "limits", "give rate (N/s, N/m or N/h), running (a whole number), or both")
		}
	}
	s.Limits = lim
}

// LeaseID names a token's permit in its step's limiter: its partition and
// stream entry (the same when the token is read again or reclaimed).
func (e Entry) LeaseID() string {
	return e.Part.Pipeline + "@" + e.Part.API + "#" + strconv.Itoa(e.Part.N) + "/" + e.ID
}

// LimitGrant is the answer of AcquireLimits.
type LimitGrant struct {
	// Granted is how many of the ids, from the first, got a permit.
	Granted int
	// Free is how many permits are left now; -1: no limit.
	Free int
	// Wait, when Free is 0, is how long until a permit may free up: when
	// the rate window's oldest grant leaves it, or 100ms for a running
	// limit (a release is not announced).
	Wait time.Duration
	// At is the time of the grant (by Redis's clock, unless the client's
	// clock was injected): begin the granted tokens at it (BeginBatchAt),
	// so their ACKs keep the rate's windows exactly and come after the
	// end of the token whose running permit they took.
	At time.Time
}

// limitsCall runs limits.lua for a step with limits.
func (c *Client) limitsCall(ctx context.Context, pipeline string, st *Step, op string, now time.Time, lease time.Duration, ids []string) (any, error) {
	lim := st.Limits
	args := make([]any, 0, 6+len(ids))
	at := ms(now)
	if c.serverClock {
		at = "" // limits.lua reads Redis's clock
	}
	args = append(args, op, at, lim.Running, lim.Rate.Count, lim.Rate.Per.Milliseconds(), lease.Milliseconds())
	for _, id := range ids {
		args = append(args, id)
	}
	keys := []string{c.keys.LimitRunning(pipeline, st.Name), c.keys.LimitRate(pipeline, st.Name)}
	r, err := lua.Limits.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: limits of %s/%s: %w", pipeline, st.Name, err)
	}
	return r, nil
}

// limitedStep returns step of p, or an error when it has no limits.
func limitedStep(p *Pipeline, step string) (*Step, error) {
	st, ok := p.Steps[step]
	if !ok {
		return nil, fmt.Errorf("%w: pipeline %s has no step %q", ErrStepNotFound, p.Name, step)
	}
	if st.Limits == nil {
		return nil, fmt.Errorf("dsat: step %s/%s has no limits", p.Name, step)
	}
	return st, nil
}

// AcquireLimits asks step's limiter for a permit for each id (LeaseID),
// in order: the first Granted ids may begin now; the others must wait. A
// running permit is a lease that ends after lease unless renewed
// (RenewLimits) or released (ReleaseLimits); an id that already holds one
// keeps it. With no ids it only looks (Free, Wait).
func (c *Client) AcquireLimits(ctx context.Context, p *Pipeline, step string, ids []string, lease time.Duration) (LimitGrant, error) {
	st, err := limitedStep(p, step)
	if err != nil {
		return LimitGrant{}, err
	}
	now := c.cfg.Now()
	r, err := c.limitsCall(ctx, p.Name, st, "acquire", now, lease, ids)
	if err != nil {
		return LimitGrant{}, err
	}
	v, _ := r.([]any)
	if len(v) != 4 {
		return LimitGrant{}, fmt.Errorf("dsat: limits of %s/%s: unexpected reply %v", p.Name, step, r)
	}
	g, _ := v[0].(int64)
	free, _ := v[1].(int64)
	wait, _ := v[2].(int64)
	at, _ := v[3].(int64)
	return LimitGrant{Granted: int(g), Free: int(free), Wait: time.Duration(wait) * time.Millisecond, At: time.UnixMilli(at)}, nil
}

// ReleaseLimits gives back the running permits of ids (tokens ended). A
// step without a running limit holds none: nothing is sent.
func (c *Client) ReleaseLimits(ctx context.Context, p *Pipeline, step string, ids []string) error {
	st, err := limitedStep(p, step)
	if err != nil || st.Limits.Running == 0 || len(ids) == 0 {
		return err
	}
	_, err = c.limitsCall(ctx, p.Name, st, "release", c.cfg.Now(), 0, ids)
	return err
}

// RenewLimits extends the running permits of ids (tokens still running)
// by lease from now; an id whose lease was lost is not given one.
func (c *Client) RenewLimits(ctx context.Context, p *Pipeline, step string, ids []string, lease time.Duration) error {
	st, err := limitedStep(p, step)
	if err != nil || st.Limits.Running == 0 || len(ids) == 0 {
		return err
	}
	_, err = c.limitsCall(ctx, p.Name, st, "renew", c.cfg.Now(), lease, ids)
	return err
}

// LimitUsage is what a step's limits hold now, over every satellite.
type LimitUsage struct {
	// Running is how many running permits are leased.
	Running int `json:"running"`
	// RateUsed is how many tokens were begun in the rate's current window
	// (the last Rate.Per).
	RateUsed int `json:"rate_used"`
}

// LimitUsages returns the usage of each step of p that has limits, by
// step name.
func (c *Client) LimitUsages(ctx context.Context, p *Pipeline) (map[string]LimitUsage, error) {
	out := map[string]LimitUsage{}
	for _, name := range p.Order {
		st := p.Steps[name]
		if st.Limits == nil {
			continue
		}
		r, err := c.limitsCall(ctx, p.Name, st, "usage", c.cfg.Now(), 0, nil)
		if err != nil {
			return nil, err
		}
		v, _ := r.([]any)
		if len(v) == 2 {
			run, _ := v[0].(int64)
			used, _ := v[1].(int64)
			out[name] = LimitUsage{Running: int(run), RateUsed: int(used)}
		}
	}
	return out, nil
}
