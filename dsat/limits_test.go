package dsat_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestParseLimits: limits' settings, and their errors with file and line.
func TestParseLimits(t *testing.T) {
	t.Parallel()
	p, err := dsat.ParsePipeline("l.yaml", []byte(`
name: l
version: 1.0.0
steps:
  a: {handler: echo, next: [b], limits: {rate: 20/s, running: 50}}
  b: {handler: echo, next: [c], limits: {rate: 100/m}}
  c: {handler: echo, next: [d], limits: {running: 1, rate: 5/h}}
  d: {handler: echo, limits: {key: customer, running_per_key: 2, rate_per_key: 5/s}}
`))
	if err != nil {
		t.Fatal(err)
	}
	for step, want := range map[string]string{"a": "20/s 50", "b": "100/m 0", "c": "5/h 1"} {
		l := p.Steps[step].Limits
		if l == nil {
			t.Fatalf("step %s: no limits", step)
		}
		if got := l.Rate.String() + " " + strconv.Itoa(l.Running); got != want {
			t.Errorf("step %s: limits %q, want %q", step, got, want)
		}
	}
	if r := p.Steps["a"].Limits.Rate; r != (dsat.Rate{Count: 20, Per: time.Second}) {
		t.Errorf("rate 20/s parsed as %+v", r)
	}
	if l := *p.Steps["d"].Limits; l.Key != "customer" || l.RunningPerKey != 2 || l.RatePerKey != (dsat.Rate{Count: 5, Per: time.Second}) || l.Running != 0 {
		t.Errorf("per-key limits parsed as %+v", l)
	}
	_, err = dsat.ParsePipeline("l.yaml", []byte(`
name: l
version: 1.0.0
steps:
  a:
    handler: echo
    next: [b, c, d, e, f, g]
    limits: {rate: 0/s, running: -1}
  b:
    handler: echo
    limits:
      rate: 5/d
  c: {handler: echo, limits: {}}
  d: {handler: echo, limits: {rate: [1], key: customer, running_per_key: 2}}
  e: {handler: echo, limits: {rate: 100001/s, burst: 3}}
  f: {handler: echo, limits: {key: customer}}
  g: {handler: echo, limits: {running_per_key: 0, rate_per_key: 1/x}}
`))
	for _, want := range []string{
		`l.yaml:8: step "a": field "limits.rate": must be N/s, N/m or N/h with N a whole number from 1 to 100000, got "0/s"`,
		`l.yaml:8: step "a": field "limits.running": must be a whole number from 1 to 1000000, got "-1"`,
		`l.yaml:12: step "b": field "limits.rate": must be N/s, N/m or N/h with N a whole number from 1 to 100000, got "5/d"`,
		`l.yaml:13: step "c": field "limits": give rate (N/s, N/m or N/h), running (a whole number), their per-key forms with key, or several`,
		`l.yaml:14: step "d": field "limits.rate": must be N/s, N/m or N/h`,
		`l.yaml:14: step "d": field "limits.rate": must be N/s, N/m or N/h, got a !!seq`,
		`l.yaml:15: step "e": field "limits.rate": must be N/s, N/m or N/h with N a whole number from 1 to 100000, got "100001/s"`,
		`l.yaml:15: step "e": field "burst": unknown field`,
		`l.yaml:16: step "f": field "limits.key": give running_per_key, rate_per_key or both with it`,
		`l.yaml:17: step "g": field "limits.running_per_key": must be a whole number from 1 to 1000000, got "0"`,
		`l.yaml:17: step "g": field "limits.rate_per_key": must be N/s, N/m or N/h`,
		`l.yaml:17: step "g": field "limits": running_per_key and rate_per_key need key`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in\n%v", want, err)
		}
	}
}

// grant is a LimitGrant and how many requests it granted.
type grant struct {
	dsat.LimitGrant
	n int
}

func countTrue(bs []bool) int {
	n := 0
	for _, b := range bs {
		if b {
			n++
		}
	}
	return n
}

// reqs are requests for ids, with no key.
func reqs(ids ...string) []dsat.LimitRequest {
	out := make([]dsat.LimitRequest, len(ids))
	for i, id := range ids {
		out[i] = dsat.LimitRequest{ID: id}
	}
	return out
}

const limitsYAML = `
name: lim
version: 1.0.0
partitions: 3
steps:
  a: {handler: echo, next: [b], limits: {rate: 3/s, running: 2}}
  b: {handler: echo, next: [k], limits: {running: 2}}
  k: {handler: echo, limits: {key: customer, running_per_key: 1, rate_per_key: 2/s}}
`

// TestLimitsScript: limits.lua on both backends. Running permits are
// leases: at most `running` at once, given back by release or when the
// lease ends, kept (not taken twice) by an id that holds one; the rate is
// a sliding window: at most `rate` grants after now - period, counted
// whatever the order of the callers' clocks; the wait says when the
// window's oldest grant leaves it.
func TestLimitsScript(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, limitsYAML)
		lease := 10 * time.Second
		acq := func(step string, ids ...string) grant {
			t.Helper()
			g, err := h.c.AcquireLimits(h.ctx, h.p, step, reqs(ids...), lease)
			if err != nil {
				t.Fatal(err)
			}
			return grant{g, countTrue(g.Granted)}
		}
		// Running: 2 of 3 granted; the third waits (poll 100ms).
		if g := acq("b", "x1", "x2", "x3"); g.n != 2 || g.Free != 0 || g.Wait != 100*time.Millisecond {
			t.Fatalf("running 2, asked 3: %+v", g)
		}
		if g := acq("b", "x1", "x3"); g.n != 1 {
			t.Fatalf("x1 holds a lease and keeps it; x3 waits: %+v", g)
		}
		if err := h.c.ReleaseLimits(h.ctx, h.p, "b", reqs("x1")); err != nil {
			t.Fatal(err)
		}
		if g := acq("b", "x3"); g.n != 1 || g.Free != 0 {
			t.Fatalf("after a release: %+v", g)
		}
		u, err := h.c.LimitUsages(h.ctx, h.p)
		if err != nil || u["b"].Running != 2 {
			t.Fatalf("usage %+v %v", u, err)
		}
		// A lease renewed lives on; one not renewed ends.
		h.advance(6 * time.Second)
		if err := h.c.RenewLimits(h.ctx, h.p, "b", reqs("x2", "gone"), lease); err != nil {
			t.Fatal(err)
		}
		h.advance(5 * time.Second)
		if g := acq("b", "y1", "y2"); g.n != 1 || g.Free != 0 {
			t.Fatalf("x3's lease ended, x2's was renewed: %+v", g)
		}
		if u, _ := h.c.LimitUsages(h.ctx, h.p); u["b"].Running != 2 {
			t.Fatalf("usage %+v", u)
		}

		// Rate 3/s (and running 2 on a): the rate binds once running frees.
		if g := acq("a", "r1", "r2", "r3"); g.n != 2 || g.Free != 0 {
			t.Fatalf("running 2 binds first: %+v", g)
		}
		if err := h.c.ReleaseLimits(h.ctx, h.p, "a", reqs("r1", "r2")); err != nil {
			t.Fatal(err)
		}
		h.advance(400 * time.Millisecond)
		if g := acq("a", "r3", "r4"); g.n != 1 || g.Free != 0 || g.Wait != 600*time.Millisecond {
			t.Fatalf("one grant left in the window, then wait for the oldest to leave it: %+v", g)
		}
		if u, _ := h.c.LimitUsages(h.ctx, h.p); u["a"].RateUsed != 3 || u["a"].Running != 1 {
			t.Fatalf("usage %+v", u)
		}
		_ = h.c.ReleaseLimits(h.ctx, h.p, "a", reqs("r3"))
		h.advance(599 * time.Millisecond)
		if g := acq("a", "r4"); g.n != 0 || g.Wait != time.Millisecond {
			t.Fatalf("1ms before the window frees: %+v", g)
		}
		h.advance(time.Millisecond)
		if g := acq("a", "r4", "r5", "r6"); g.n != 2 {
			t.Fatalf("the first two grants left the window: %+v", g)
		}
		// A caller whose clock is behind still counts the grants made
		// after its now - period: no window holds more than 3.
		_ = h.c.ReleaseLimits(h.ctx, h.p, "a", reqs("r4", "r5"))
		h.advance(-500 * time.Millisecond)
		if g := acq("a", "r6"); g.n != 0 {
			t.Fatalf("a clock 500ms behind must not get a 4th grant in the window: %+v", g)
		}
		if g := acq("a"); g.n != 0 || g.Free != 0 {
			t.Fatalf("a look: %+v", g)
		}
		if _, err := h.c.AcquireLimits(h.ctx, h.p, "nope", nil, lease); err == nil {
			t.Fatal("a step that does not exist: no error")
		}
	})
}

const rateBatchYAML = `
name: lim
version: 1.0.0
partitions: 2
steps:
  r: {handler: echo, next: [b], limits: {rate: 10/s}}
  b: {handler: echo, limits: {rate: 100/s, running: 5}}
`

// TestLimitsScriptRateBatch: limits.lua's batches of rate permits
// (issue 16) on both backends: a batch takes what the window has left, its
// permits count in the window until the grant + their life + the period,
// those not used come back with the next batch, and a budget is spent only
// within its life; a step with another limit than its rate takes none.
func TestLimitsScriptRateBatch(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, rateBatchYAML)
		life := 100 * time.Millisecond
		seq := 0
		take := func(n int, prev *dsat.RateBudget) (*dsat.RateBudget, int, time.Duration) {
			t.Helper()
			seq++
			bud, free, wait, err := h.c.TakeRateBudget(h.ctx, h.p, "r", fmt.Sprintf("sat1:%d", seq), n, life, prev)
			if err != nil {
				t.Fatal(err)
			}
			return bud, free, wait
		}
		t0 := h.clock()
		b1, free, _ := take(4, nil)
		if b1.Left() != 4 || free != 6 || !b1.At.Equal(t0) || !b1.Until.Equal(t0.Add(life)) {
			t.Fatalf("first batch of 4 of 10/s: left %d free %d at %s until %s", b1.Left(), free, b1.At, b1.Until)
		}
		h.advance(30 * time.Millisecond)
		if n, at := b1.Use(3, time.Time{}); n != 3 || !at.Equal(t0.Add(30*time.Millisecond)) {
			t.Fatalf("use 3: %d at %s", n, at)
		}
		if n, _ := b1.Use(5, time.Time{}); n != 1 || b1.Left() != 0 {
			t.Fatalf("use 5 of 1 left: %d, left %d", n, b1.Left())
		}
		b2, free, _ := take(5, nil)
		if b2.Left() != 5 || free != 1 {
			t.Fatalf("second batch: left %d free %d", b2.Left(), free)
		}
		h.advance(110 * time.Millisecond) // past b2's life
		if n, _ := b2.Use(1, time.Time{}); n != 0 || b2.Left() != 0 {
			t.Fatalf("a budget past its life: used %d, left %d", n, b2.Left())
		}
		// b2's 5 unused permits come back with the next batch: 6 free.
		b3, free, wait := take(20, b2)
		if b3.Left() != 6 || free != 0 || wait != 960*time.Millisecond {
			t.Fatalf("after giving back 5: left %d free %d wait %s", b3.Left(), free, wait)
		}
		if u, _ := h.c.LimitUsages(h.ctx, h.p); u["r"].RateUsed != 10 {
			t.Fatalf("usage %+v", u)
		}
		// b1's permits count until t0 + life + 1s, not t0 + 1s.
		h.advance(t0.Add(time.Second).Sub(h.clock()))
		if b, free, _ := take(1, nil); b.Left() != 0 || free != 0 {
			t.Fatalf("b1's permits left the window before the end of their life: %d, free %d", b.Left(), free)
		}
		h.advance(life)
		if b, free, _ := take(9, nil); b.Left() != 4 || free != 0 {
			t.Fatalf("b1's 4 permits left the window, b3's 6 still in it: %d, free %d", b.Left(), free)
		}
		if _, _, _, err := h.c.TakeRateBudget(h.ctx, h.p, "b", "sat1:x", 1, life, nil); err == nil {
			t.Fatal("a step with a running limit took a rate budget")
		}
	})
}

// TestLimitsScriptPerKey: limits.lua's per-key limits on both backends: a
// key at its limits is passed over and the next ids, of other keys, go
// on; running_per_key leases are given back by release; rate_per_key is
// a sliding window per key; a step with only per-key limits has no free
// count of its own (-1).
func TestLimitsScriptPerKey(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, limitsYAML)
		acq := func(rs ...dsat.LimitRequest) string {
			t.Helper()
			g, err := h.c.AcquireLimits(h.ctx, h.p, "k", rs, 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			if g.Free != -1 {
				t.Fatalf("free %d, want -1 (no limit of the step's own)", g.Free)
			}
			out := ""
			for _, ok := range g.Granted {
				out += map[bool]string{true: "1", false: "0"}[ok]
			}
			return out
		}
		r := func(id, key string) dsat.LimitRequest { return dsat.LimitRequest{ID: id, Key: key} }
		if got := acq(r("a1", "A"), r("a2", "A"), r("b1", "B"), r("a3", "A")); got != "1010" {
			t.Fatalf("running_per_key 1: granted %s, want 1010", got)
		}
		if got := acq(r("a1", "A"), r("b2", "B")); got != "10" {
			t.Fatalf("a1 keeps its lease, b2 waits for b1: %s", got)
		}
		if err := h.c.ReleaseLimits(h.ctx, h.p, "k", []dsat.LimitRequest{r("a1", "A")}); err != nil {
			t.Fatal(err)
		}
		if got := acq(r("a2", "A")); got != "1" {
			t.Fatalf("after a1's release: %s", got)
		}
		// rate_per_key 2/s: A had a1 and a2 this second.
		_ = h.c.ReleaseLimits(h.ctx, h.p, "k", []dsat.LimitRequest{r("a2", "A")})
		if got := acq(r("a3", "A"), r("c1", "C")); got != "01" {
			t.Fatalf("A's rate is used up, C is another key: %s", got)
		}
		h.advance(time.Second)
		if got := acq(r("a3", "A")); got != "1" {
			t.Fatalf("a second later: %s", got)
		}
		// A key with characters that cannot be in a key name is hashed.
		long := strings.Repeat("x", 100) + ":{}"
		if got := acq(r("l1", long), r("l2", long)); got != "10" {
			t.Fatalf("a long key: %s", got)
		}
	})
}

// TestLimitKey: a token's fairness key from its input.
func TestLimitKey(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`{"customer": "acme", "n": 1}`: "acme",
		`{"customer": 42}`:             "42",
		`{"customer": {"id": 1}}`:      `{"id": 1}`,
		`{"customer": null}`:           "",
		`{"other": "x"}`:               "",
		`[1, 2]`:                       "",
		`"customer"`:                   "",
	} {
		if got := dsat.LimitKey("customer", []byte(in)); got != want {
			t.Errorf("LimitKey(%s) = %q, want %q", in, got, want)
		}
	}
}

const limitKeysYAML = `
name: lim
version: 1.0.0
steps:
  k: {handler: echo, next: [r], limits: {key: customer, running_per_key: 3}}
  r: {handler: echo, limits: {rate: 5/s}}
`

// TestLimitUsageKeys: on both backends, LimitUsages reports a step's
// busiest fairness keys (at most LimitTopKeys, busiest first, ties by
// key) with their running permits counted now: a release counts off at
// once, a lease that ended unreleased by the time of the read; a key with
// characters a Redis key name cannot hold shows as itself; a step without
// running_per_key has no keys (and no index).
func TestLimitUsageKeys(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, limitKeysYAML)
		acq := func(lease time.Duration, key string, ids ...string) {
			t.Helper()
			var rs []dsat.LimitRequest
			for _, id := range ids {
				rs = append(rs, dsat.LimitRequest{ID: id, Key: key})
			}
			if _, err := h.c.AcquireLimits(h.ctx, h.p, "k", rs, lease); err != nil {
				t.Fatal(err)
			}
		}
		keys := func() string {
			t.Helper()
			u, err := h.c.LimitUsages(h.ctx, h.p)
			if err != nil {
				t.Fatal(err)
			}
			if len(u["r"].Keys) != 0 {
				t.Fatalf("a step without running_per_key: keys %v", u["r"].Keys)
			}
			var out []string
			for _, k := range u["k"].Keys {
				out = append(out, fmt.Sprintf("%s=%d", k.Key, k.Running))
			}
			return strings.Join(out, " ")
		}
		if got := keys(); got != "" {
			t.Fatalf("no key running: %q", got)
		}
		long := "org:7/" + strings.Repeat("x", 70)
		acq(time.Minute, "A", "a1", "a2", "a3", "a4") // running_per_key 3: a4 waits
		acq(2*time.Second, "B", "b1", "b2")
		acq(time.Minute, long, "l1", "l2")
		for i := range 12 {
			acq(time.Minute, fmt.Sprintf("D%02d", i), fmt.Sprintf("d%d", i))
		}
		if got, want := keys(), "A=3 B=2 "+long+"=2 D00=1 D01=1 D02=1 D03=1 D04=1 D05=1 D06=1"; got != want {
			t.Fatalf("keys %q, want %q", got, want)
		}
		if err := h.c.ReleaseLimits(h.ctx, h.p, "k", []dsat.LimitRequest{{ID: "a1", Key: "A"}, {ID: "a2", Key: "A"}, {ID: "l1", Key: long}}); err != nil {
			t.Fatal(err)
		}
		h.advance(3 * time.Second) // B's leases end unreleased
		if got, want := keys(), "A=1 D00=1 D01=1 D02=1 D03=1 D04=1 D05=1 D06=1 D07=1 D08=1"; got != want {
			t.Fatalf("after releases and B's leases ended: keys %q, want %q", got, want)
		}
		var all []dsat.LimitRequest
		for i := range 12 {
			all = append(all, dsat.LimitRequest{ID: fmt.Sprintf("d%d", i), Key: fmt.Sprintf("D%02d", i)})
		}
		all = append(all, dsat.LimitRequest{ID: "a3", Key: "A"}, dsat.LimitRequest{ID: "l2", Key: long})
		if err := h.c.ReleaseLimits(h.ctx, h.p, "k", all); err != nil {
			t.Fatal(err)
		}
		if got := keys(); got != "" {
			t.Fatalf("every permit released: keys %q", got)
		}
		if n, err := h.rdb.Exists(h.ctx, h.c.Keys().LimitKeyIndex("lim", "k"), h.c.Keys().LimitKeyIndex("lim", "r")).Result(); err != nil || n != 0 {
			t.Fatalf("the key indexes exist (%d, %v) with no key running", n, err)
		}
	})
}
