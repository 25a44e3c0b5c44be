package dsat

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/dsat-dev/dsat/lua"
)

// Limits are a step's limits (limits: in YAML), over every satellite and
// partition together: at most Rate.Count tokens begun in any window of
// Rate.Per, at most Running tokens begun and not ended at once, and the
// same per fairness key (the value of the input's field Key). A step with
// limits begins each token before its handler runs; a token that may not
// begin yet waits, read but not begun, using no attempt.
type Limits struct {
	Rate    Rate
	Running int
	// Key names the field of the step's input whose value is a token's
	// fairness key; RunningPerKey and RatePerKey hold per key.
	Key           string
	RunningPerKey int
	RatePerKey    Rate
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

// limitsFields are the fields of limits: in YAML.
var limitsFields = []string{"rate", "running", "key", "running_per_key", "rate_per_key"}

// MaxLimitKey is the longest fairness key field name.
const MaxLimitKey = 64

// limits reads a step's limits: mapping.
func (l *loader) limits(n *yaml.Node, s *Step) {
	f := l.fields(n, s.Name, "limits", limitsFields...)
	lim := &Limits{}
	lim.Rate = l.rate(f, s.Name, "rate")
	lim.RatePerKey = l.rate(f, s.Name, "rate_per_key")
	if v, ok := f["running"]; ok {
		lim.Running = l.intIn(v, s.Name, "limits.running", 1, 1_000_000)
	}
	if v, ok := f["running_per_key"]; ok {
		lim.RunningPerKey = l.intIn(v, s.Name, "limits.running_per_key", 1, 1_000_000)
	}
	_, perKey := f["running_per_key"]
	if _, ok := f["rate_per_key"]; ok {
		perKey = true
	}
	v, hasKey := f["key"]
	switch {
	case hasKey && (v.Kind != yaml.ScalarNode || v.Value == "" || len(v.Value) > MaxLimitKey || strings.ContainsAny(v.Value, " \t\n")):
		l.add(v.Line, s.Name, "limits.key", fmt.Sprintf("must be the name of a field of the step's input (1 to %d characters, no spaces)", MaxLimitKey))
	case hasKey && !perKey:
		l.add(v.Line, s.Name, "limits.key", "give running_per_key, rate_per_key or both with it")
	case hasKey:
		lim.Key = v.Value
	case perKey:
		l.add(n.Line, s.Name, "limits", "running_per_key and rate_per_key need key: the input field that names each token's key")
	}
	if len(f) == 0 && n.Kind == yaml.MappingNode {
		l.add(n.Line, s.Name, "limits", "give rate (N/s, N/m or N/h), running (a whole number), their per-key forms with key, or several")
	}
	s.Limits = lim
}

// rate reads the rate field name of limits:, if given.
func (l *loader) rate(f map[string]*yaml.Node, step, name string) Rate {
	v, ok := f[name]
	if !ok {
		return Rate{}
	}
	r, err := ParseRate(v.Value)
	if v.Kind != yaml.ScalarNode {
		r, err = Rate{}, fmt.Errorf("must be N/s, N/m or N/h, got a %s", v.Tag)
	}
	if err != nil {
		l.add(v.Line, step, "limits."+name, err.Error())
	}
	return r
}

// LimitKey is a token's fairness key: the value of the input's field
// named key, as text (a string as itself, another value as its JSON);
// "" (one shared key) for an input that is not an object or lacks it.
func LimitKey(key string, payload []byte) string {
	var m map[string]json.RawMessage
	if json.Unmarshal(payload, &m) != nil {
		return ""
	}
	raw, ok := m[key]
	if !ok || string(raw) == "null" {
		return ""
	}
	var str string
	if json.Unmarshal(raw, &str) == nil {
		return str
	}
	return string(raw)
}

// LeaseID names a token's permit in its step's limiter: its partition and
// stream entry (the same when the token is read again or reclaimed), and
// for a high or low token its level (entry ids repeat across the level
// streams of a partition; issue 16).
func (e Entry) LeaseID() string {
	id := e.Part.Pipeline + "@" + e.Part.API + "#" + strconv.Itoa(e.Part.N) + "/" + e.ID
	if e.Priority != PriorityNormal {
		id += "/" + e.Priority.String()
	}
	return id
}

// LimitRequest asks a step's limiter for one token's permit: ID is the
// token's lease id (Entry.LeaseID), Key its fairness key (LimitKey; ""
// for a step without key).
type LimitRequest struct {
	ID, Key string
}

// LimitGrant is the answer of AcquireLimits.
type LimitGrant struct {
	// Granted says, for each request in order, whether it got a permit.
	// A request whose key is at its limits is passed over and the next
	// ones go on; at the step's own limits every one after is refused.
	Granted []bool
	// Free is how many of the step's permits are left now; -1: no limit
	// of the step's own (only per-key ones, or none).
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

// limitsCall runs limits.lua for a step with limits. Op "keys" sends
// no pairs: it counts the running leases of each of reqs' keys.
func (c *Client) limitsCall(ctx context.Context, pipeline string, st *Step, op string, now time.Time, lease time.Duration, reqs []LimitRequest) (any, error) {
	lim := st.Limits
	at := ms(now)
	if c.serverClock {
		at = "" // limits.lua reads Redis's clock
	}
	keys := []string{c.keys.LimitRunning(pipeline, st.Name), c.keys.LimitRate(pipeline, st.Name)}
	if lim.Key == "" {
		keys = append(keys, c.keys.LimitRateBatches(pipeline, st.Name)) // KEYS[3]: counted with the rate
	}
	var names []any // the index's members: key k's name
	index := map[string]int{}
	ks := make([]int, len(reqs))
	for i, r := range reqs {
		k, seen := index[r.Key]
		if lim.Key != "" && !seen {
			keys = append(keys, c.keys.LimitKeyRunning(pipeline, st.Name, r.Key), c.keys.LimitKeyRate(pipeline, st.Name, r.Key))
			k = len(keys)/2 - 1 // KEYS[1+2k], KEYS[2+2k] in Lua
			index[r.Key] = k
			names = append(names, r.Key)
		}
		ks[i] = k
	}
	if !lim.keyIndexed() {
		names = nil
	} else {
		keys = append(keys, c.keys.LimitKeyIndex(pipeline, st.Name))
	}
	args := make([]any, 0, 10+len(names)+2*len(reqs))
	args = append(args, op, at, lim.Running, lim.Rate.Count, lim.Rate.Per.Milliseconds(), lease.Milliseconds(),
		lim.RunningPerKey, lim.RatePerKey.Count, lim.RatePerKey.Per.Milliseconds(), len(names))
	args = append(args, names...)
	for i, r := range reqs {
		if op != "keys" {
			args = append(args, r.ID, ks[i])
		}
	}
	res, err := lua.Limits.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: limits of %s/%s: %w", pipeline, st.Name, err)
	}
	return res, nil
}

// keyIndexed reports whether a step's limiter keeps an index of its
// fairness keys' running leases (LimitUsage.Keys): with running_per_key.
func (l *Limits) keyIndexed() bool { return l.Key != "" && l.RunningPerKey > 0 }

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

// AcquireLimits asks step's limiter for a permit for each request, in
// order (see LimitGrant). A running permit is a lease that ends after
// lease unless renewed (RenewLimits) or released (ReleaseLimits); an id
// that already holds one keeps it. With no request it only looks (Free,
// Wait).
func (c *Client) AcquireLimits(ctx context.Context, p *Pipeline, step string, reqs []LimitRequest, lease time.Duration) (LimitGrant, error) {
	st, err := limitedStep(p, step)
	if err != nil {
		return LimitGrant{}, err
	}
	r, err := c.limitsCall(ctx, p.Name, st, "acquire", c.cfg.Now(), lease, reqs)
	if err != nil {
		return LimitGrant{}, err
	}
	v, _ := r.([]any)
	if len(v) != 4 {
		return LimitGrant{}, fmt.Errorf("dsat: limits of %s/%s: unexpected reply %v", p.Name, step, r)
	}
	flags, _ := v[0].(string)
	free, _ := v[1].(int64)
	wait, _ := v[2].(int64)
	at, _ := v[3].(int64)
	g := LimitGrant{Granted: make([]bool, len(reqs)), Free: int(free), Wait: time.Duration(wait) * time.Millisecond, At: time.UnixMilli(at)}
	for i := range g.Granted {
		g.Granted[i] = i < len(flags) && flags[i] == '1'
	}
	return g, nil
}

// RateBudget is a batch of a step's rate permits taken ahead of reading
// (TakeRateBudget), for a step whose only limit is its rate: the reader
// spends them on the tokens it reads (Use) without a limiter call per
// read. Each permit may time its token's ACK from the grant (At) to the
// grant + life (Until); the limiter counts it in the rate's window at
// Until, so no window of the period holds more ACKs than the rate's count,
// whenever in its life a permit is used. Permits not used come back with
// the next batch taken (or stay counted until their window passes).
type RateBudget struct {
	// At is when the permits were granted, Until the latest ACK time they
	// may be used for.
	At, Until time.Time
	tag       string
	n, used   int
	got       time.Time        // when the grant came back (local, monotonic)
	clock     func() time.Time // an injected clock; nil: Redis's (At + time since got)
}

// now is the limiter's clock now, as best known here: the injected clock,
// or the grant's time plus the time since it came back (never before At).
func (b *RateBudget) now() time.Time {
	if b.clock != nil {
		return b.clock()
	}
	return b.At.Add(time.Since(b.got))
}

// Left is how many permits are left for use now (0 for a nil budget or one
// whose life has passed).
func (b *RateBudget) Left() int {
	if b == nil || b.now().After(b.Until) {
		return 0
	}
	return b.n - b.used
}

// Use spends up to k permits on tokens sent at the latest at sent (zero:
// unknown) and returns how many and the time of their ACKs: now by the
// limiter's clock, and not before sent (a token is not begun before it
// was sent), within the budget's life; 0 when its life is over.
func (b *RateBudget) Use(k int, sent time.Time) (int, time.Time) {
	if b == nil {
		return 0, time.Time{}
	}
	at := b.now()
	if b.clock == nil && sent.After(at) { // Redis's clock: stream ids are its times too
		at = sent
	}
	if at.Before(b.At) {
		at = b.At
	}
	k = min(k, b.n-b.used)
	if k <= 0 || at.After(b.Until) {
		return 0, time.Time{}
	}
	b.used += k
	return k, at
}

// MaxRateBatch bounds the permits one TakeRateBudget asks for.
const MaxRateBatch = 1024

// TakeRateBudget takes up to n (at most MaxRateBatch) of step's rate
// permits at once for holder (unique per call: the caller's id and a
// sequence number), each usable for life (see RateBudget); the unused
// permits of prev, if any, are given back in the same call. It returns the
// budget (possibly of no permit), the step's permits left now and, when
// none is, how long until one may be. For a step whose only limit is its
// rate: running and per-key limits need a lease id per token
// (AcquireLimits).
func (c *Client) TakeRateBudget(ctx context.Context, p *Pipeline, step, holder string, n int, life time.Duration, prev *RateBudget) (*RateBudget, int, time.Duration, error) {
	st, err := limitedStep(p, step)
	if err != nil {
		return nil, 0, 0, err
	}
	lim := st.Limits
	if lim.Rate.Count == 0 || lim.holdsLeases() || lim.Key != "" {
		return nil, 0, 0, fmt.Errorf("dsat: step %s/%s: rate budgets are for a step whose only limit is its rate", p.Name, step)
	}
	now := c.cfg.Now()
	at := ms(now)
	if c.serverClock {
		at = ""
	}
	back := []any{"", 0, 0}
	if prev != nil && prev.used < prev.n {
		back = []any{prev.tag, prev.n, prev.used}
	}
	args := []any{"batch", at, 0, lim.Rate.Count, lim.Rate.Per.Milliseconds(), 0, 0, 0, 0, 0,
		holder, min(n, MaxRateBatch), life.Milliseconds()}
	args = append(args, back...)
	keys := []string{c.keys.LimitRunning(p.Name, step), c.keys.LimitRate(p.Name, step), c.keys.LimitRateBatches(p.Name, step)}
	r, err := lua.Limits.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		return nil, 0, 0, fmt.Errorf("dsat: limits of %s/%s: %w", p.Name, step, err)
	}
	v, _ := r.([]any)
	if len(v) != 5 {
		return nil, 0, 0, fmt.Errorf("dsat: limits of %s/%s: unexpected reply %v", p.Name, step, r)
	}
	g, _ := v[0].(int64)
	free, _ := v[1].(int64)
	wait, _ := v[2].(int64)
	atMs, _ := v[3].(int64)
	tag, _ := v[4].(string)
	b := &RateBudget{At: time.UnixMilli(atMs), tag: tag, n: int(g), got: time.Now()}
	b.Until = b.At.Add(life)
	if !c.serverClock {
		b.clock = c.cfg.Now
	}
	if prev != nil {
		prev.used = prev.n // given back: no longer usable
	}
	return b, int(free), time.Duration(wait) * time.Millisecond, nil
}

// holdsLeases reports whether a step's limits lease running permits.
func (l *Limits) holdsLeases() bool { return l.Running > 0 || l.Key != "" && l.RunningPerKey > 0 }

// ReleaseLimits gives back the running permits of reqs (tokens ended). A
// step without a running limit holds none: nothing is sent.
func (c *Client) ReleaseLimits(ctx context.Context, p *Pipeline, step string, reqs []LimitRequest) error {
	st, err := limitedStep(p, step)
	if err != nil || !st.Limits.holdsLeases() || len(reqs) == 0 {
		return err
	}
	_, err = c.limitsCall(ctx, p.Name, st, "release", c.cfg.Now(), 0, reqs)
	return err
}

// RenewLimits extends the running permits of reqs (tokens still running)
// by lease from now; a request whose lease was lost is not given one.
func (c *Client) RenewLimits(ctx context.Context, p *Pipeline, step string, reqs []LimitRequest, lease time.Duration) error {
	st, err := limitedStep(p, step)
	if err != nil || !st.Limits.holdsLeases() || len(reqs) == 0 {
		return err
	}
	_, err = c.limitsCall(ctx, p.Name, st, "renew", c.cfg.Now(), lease, reqs)
	return err
}

// LimitUsage is what a step's limits hold now, over every satellite.
type LimitUsage struct {
	// Running is how many running permits are leased.
	Running int `json:"running"`
	// RateUsed is how many tokens were begun in the rate's current window
	// (the last Rate.Per); a batch of rate permits (TakeRateBudget) counts
	// whole from its grant to the end of its life + the period, its permits
	// used or not yet (those given back unused no longer count).
	RateUsed int `json:"rate_used"`
	// Keys, for a step with running_per_key, are the fairness keys with
	// the most running permits (at most LimitTopKeys, busiest first; ties
	// by key), none idle.
	Keys []KeyUsage `json:"keys,omitempty"`
}

// KeyUsage is one fairness key's running permits.
type KeyUsage struct {
	Key     string `json:"key"`
	Running int    `json:"running"`
}

// LimitTopKeys is how many of a step's busiest fairness keys LimitUsages
// reports.
const LimitTopKeys = 10

// LimitUsages returns the usage of each step of p that has limits, by
// step name: one script call per such step, and for a step with
// running_per_key a read of its busiest keys (topKeys).
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
		if len(v) != 2 {
			continue
		}
		run, _ := v[0].(int64)
		used, _ := v[1].(int64)
		u := LimitUsage{Running: int(run), RateUsed: int(used)}
		if st.Limits.keyIndexed() {
			if u.Keys, err = c.topKeys(ctx, p.Name, st, LimitTopKeys); err != nil {
				return nil, err
			}
		}
		out[name] = u
	}
	return out, nil
}

// topKeys returns the n fairness keys of st with the most running
// permits, exactly: the index holds each key's count when last counted,
// an upper bound (a lease that ended unreleased is still in it), so keys
// are read from the index's top in chunks and counted now (limits.lua
// keys, which also corrects the index) until the next key's bound is
// below the n-th count found. At most topKeysRounds chunks.
func (c *Client) topKeys(ctx context.Context, pipeline string, st *Step, n int) ([]KeyUsage, error) {
	idx := c.keys.LimitKeyIndex(pipeline, st.Name)
	chunk := int64(3 * n)
	var found []KeyUsage
	for round, off := 0, int64(0); round < topKeysRounds; round, off = round+1, off+chunk {
		zs, err := c.rdb.ZRevRangeWithScores(ctx, idx, off, off+chunk-1).Result()
		if err != nil {
			return nil, fmt.Errorf("dsat: read the fairness keys of %s/%s: %w", pipeline, st.Name, err)
		}
		if len(zs) == 0 {
			break
		}
		reqs := make([]LimitRequest, len(zs))
		for i, z := range zs {
			reqs[i].Key, _ = z.Member.(string)
		}
		r, err := c.limitsCall(ctx, pipeline, st, "keys", c.cfg.Now(), 0, reqs)
		if err != nil {
			return nil, err
		}
		counts, _ := r.([]any)
		for i, v := range counts {
			if m, _ := v.(int64); m > 0 && i < len(reqs) {
				found = append(found, KeyUsage{Key: reqs[i].Key, Running: int(m)})
			}
		}
		slices.SortFunc(found, func(a, b KeyUsage) int {
			if a.Running != b.Running {
				return b.Running - a.Running
			}
			return strings.Compare(a.Key, b.Key)
		})
		found = found[:min(n, len(found))]
		// The index's next key has at most this many: the n found hold.
		if len(zs) < int(chunk) || len(found) == n && float64(found[n-1].Running) >= zs[len(zs)-1].Score {
			break
		}
	}
	return found, nil
}

// topKeysRounds bounds the chunks topKeys reads (a stale index, full of
// keys whose leases ended unreleased, is corrected chunk by chunk).
const topKeysRounds = 10
