package dsat_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestBreakerProbeLease (issue 16): a half-open breaker whose probe lease
// ran out shows as open with its until past (a probe is due), not half
// open; a satellite taking the expired probe over writes a BREAKER event.
func TestBreakerProbeLease(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, "name: brk\nversion: 1.0.0\nsteps:\n  a: {handler: echo, breaker: {failures: 1, within: 1m, open_for: 1s}}\n")
		if opened, err := h.c.BreakerFailed(h.ctx, "brk", "a", "s1"); err != nil || !opened {
			t.Fatalf("opened %v (%v)", opened, err)
		}
		h.advance(2 * time.Second)
		if won, err := h.c.BreakerProbe(h.ctx, "brk", "a", "s1", 3*time.Second); err != nil || !won {
			t.Fatalf("first probe: %v (%v)", won, err)
		}
		st := h.breaker("brk/a")
		if st.State != dsat.BreakerHalfOpen || !st.Until.Equal(h.clock().Add(3*time.Second)) {
			t.Fatalf("within the lease: %+v", st)
		}
		h.advance(4 * time.Second) // the lease ran out: no token came
		st = h.breaker("brk/a")
		if st.State != dsat.BreakerOpen || !st.Until.Before(h.clock()) {
			t.Fatalf("after the lease: %+v, want open with a past until", st)
		}
		if won, err := h.c.BreakerProbe(h.ctx, "brk", "a", "s2", 3*time.Second); err != nil || !won {
			t.Fatalf("takeover: %v (%v)", won, err)
		}
		if st := h.breaker("brk/a"); st.State != dsat.BreakerHalfOpen {
			t.Fatalf("after the takeover: %+v", st)
		}
		entries, err := h.c.FirehoseRange(h.ctx, h.p.Partition(0), "-", 100)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, e := range entries {
			for _, ev := range e.Events {
				if ev.Event == dsat.EventBreaker {
					var d struct{ State string }
					_ = json.Unmarshal(ev.Detail, &d)
					got = append(got, d.State+":"+ev.Worker)
				}
			}
		}
		if want := "open:s1 half_open:s1 half_open:s2"; strings.Join(got, " ") != want {
			t.Fatalf("BREAKER events %v, want %s", got, want)
		}
	})
}

func (h *harness) breaker(field string) dsat.BreakerState {
	h.t.Helper()
	states, err := h.c.Breakers(h.ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	return states[field]
}
