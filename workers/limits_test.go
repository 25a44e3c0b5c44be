package workers

import (
	"maps"

	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// limitEvents returns the ACK and end events (END, ERROR, TIMEOUT) of
// step of every task, sorted by time, an end before an ACK of the same
// millisecond.
func (b *bundle) limitEvents(ids []string, step string) []dsat.Event {
	b.t.Helper()
	var out []dsat.Event
	for _, id := range ids {
		evs, err := b.c.History(b.ctx, id, "", 0)
		if err != nil {
			b.t.Fatal(err)
		}
		for _, e := range evs {
			if e.Step == step && (e.Event == "ACK" || e.Event == "END" || e.Event == "ERROR" || e.Event == "TIMEOUT") {
				out = append(out, e)
			}
		}
	}
	slices.SortStableFunc(out, func(x, y dsat.Event) int {
		if c := x.At.Compare(y.At.Time); c != 0 {
			return c
		}
		return boolInt(x.Event == "ACK") - boolInt(y.Event == "ACK")
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// mostACKsPerWindow is the most ACKs in any window [t, t+w).
func mostACKsPerWindow(evs []dsat.Event, w time.Duration) int {
	var acks []time.Time
	for _, e := range evs {
		if e.Event == "ACK" {
			acks = append(acks, e.At.Time)
		}
	}
	most := 0
	for i, a := range acks {
		n := 0
		for _, b := range acks[i:] {
			if b.Sub(a) >= w {
				break
			}
			n++
		}
		most = max(most, n)
	}
	return most
}

// mostRunning is the most tokens ACKed and not ended at once.
func mostRunning(evs []dsat.Event) int {
	n, most := 0, 0
	for _, e := range evs {
		if e.Event == "ACK" {
			n++
		} else {
			n--
		}
		most = max(most, n)
	}
	return most
}

// submitAll submits the payloads in one round trip (faster than the
// limits tested, also on miniredis under -race).
func (b *bundle) submitAll(payloads ...string) []string {
	b.t.Helper()
	ps := make([][]byte, len(payloads))
	for i, p := range payloads {
		ps[i] = []byte(p)
	}
	ids, err := b.c.SubmitBatch(b.ctx, b.p.Name, ps)
	if err != nil {
		b.t.Fatal(err)
	}
	return ids
}

// startLimited starts n satellites serving every step with m.
func (b *bundle) startLimited(n int, m *Mux) {
	for i := range n {
		cfg := b.fast(fmt.Sprintf("s%d", i+1))
		b.start(m, cfg)
	}
}

const rateYAML = `
name: rl
version: 1.0.0
partitions: 3
steps:
  call: {handler: echo, limits: {rate: 20/s}, concurrency: {min: 4, max: 16}}
`

// TestLimitsRate: three satellites share rate: 20/s exactly: no window
// of one second holds more than 20 ACKs, and they keep up with it (at
// least 15/s here, under -race on a shared machine). The 30-second run
// with satellite processes (at least 18/s) is under the integration tag.
func TestLimitsRate(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, rateYAML)
		m := NewMux()
		m.HandleFunc("echo", Echo)
		ids := b.submitAll(slices.Repeat([]string{`{}`}, 70)...)
		b.startLimited(3, m)
		b.wait(ids, 15*time.Second)
		evs := b.limitEvents(ids, "call")
		if most := mostACKsPerWindow(evs, time.Second); most > 20 {
			t.Fatalf("%d ACKs in one second, want at most 20", most)
		}
		// Kept up: the ACKs of the first 3 seconds (from the first ACK, 70
		// tokens waiting) are at least 18 a second.
		var first time.Time
		n := 0
		for _, e := range evs {
			if e.Event != "ACK" {
				continue
			}
			if first.IsZero() {
				first = e.At.Time
			}
			if e.At.Sub(first) < 3*time.Second {
				n++
			}
		}
		if n < 45 { // 18/s in integration/; a loaded machine under -race is slower
			t.Fatalf("%d ACKs within 3s of the first, want at least 45 (15/s)", n)
		}
	})
}

const runningYAML = `
name: rn
version: 1.0.0
partitions: 3
steps:
  call: {handler: nap, limits: {running: 5}, concurrency: {min: 4, max: 8}}
`

// TestLimitsRunning: three satellites of 8 workers each share running: 5:
// never more than 5 tokens ACKed and not ended at once, by the events,
// and the limit is used (5 at once at some point).
func TestLimitsRunning(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, runningYAML)
		var now, most atomic.Int32
		m := NewMux()
		m.HandleFunc("nap", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			n := now.Add(1)
			defer now.Add(-1)
			for o := most.Load(); n > o && !most.CompareAndSwap(o, n); o = most.Load() {
			}
			select {
			case <-time.After(60 * time.Millisecond):
			case <-ctx.Done():
			}
			return dsat.Result{Output: []byte(`{}`)}, nil
		})
		ids := b.submitAll(slices.Repeat([]string{`{}`}, 50)...)
		b.startLimited(3, m)
		b.wait(ids, 15*time.Second)
		evs := b.limitEvents(ids, "call")
		if n := mostRunning(evs); n != 5 {
			t.Fatalf("at most %d tokens ACKed and not ended at once, want 5", n)
		}
		if n := most.Load(); n > 5 {
			t.Fatalf("%d handlers ran at once, want at most 5", n)
		}
		u, err := b.c.LimitUsages(b.ctx, b.p)
		if err != nil || u["call"].Running != 0 {
			t.Fatalf("permits left after the drain: %+v %v", u, err)
		}
	})
}

// TestLimitsKeepWaitingTokens: tokens a satellite read but may not begin
// yet (rate 1/m; it reads only as many as it may begin, then one to
// wait with) stay its own while they wait longer than the visibility
// timeout: the other satellite's reclaimer does not take them over and
// (on real Redis) their delivery counter stays 1.
func TestLimitsKeepWaitingTokens(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: kw
version: 1.0.0
steps:
  call: {handler: echo, limits: {rate: 1/m}}
`)
		m := NewMux()
		m.HandleFunc("echo", Echo)
		b.submitAll(`{}`, `{}`, `{}`)
		for _, id := range []string{"s1", "s2"} {
			cfg := b.fast(id)
			cfg.VisibilityTimeout = time.Second
			b.start(m, cfg)
		}
		key := b.c.Keys().Step(b.p.Partition(0), "call")
		owners := func() map[string]string {
			pend, err := b.rdb.XPendingExt(b.ctx, &redis.XPendingExtArgs{Stream: key, Group: "call", Start: "-", End: "+", Count: 10}).Result()
			if err != nil {
				t.Fatal(err)
			}
			out := map[string]string{}
			for _, p := range pend {
				out[p.ID] = p.Consumer
				if be.Real && p.RetryCount != 1 {
					t.Errorf("entry %s delivered %d times while it waited", p.ID, p.RetryCount)
				}
			}
			return out
		}
		time.Sleep(500 * time.Millisecond)
		before := owners()
		time.Sleep(2500 * time.Millisecond)
		after := owners()
		if len(before) == 0 || !maps.Equal(before, after) {
			t.Fatalf("the waiting tokens read changed hands: %v, then %v", before, after)
		}
	})
}
