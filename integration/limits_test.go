//go:build integration

package integration

import (
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/eventcheck"
)

// limitsYAML fans each task out to three limited steps: rated (rate
// 20/s), run5 (running 5, a 300 ms sleep: at most about 16/s) and perkey
// (running_per_key 1 on the input's kind, a 20 ms sleep).
const limitsYAML = `
name: load
version: 1.0.0
partitions: 6
steps:
  intake: {handler: echo, next: [rated, run5, perkey]}
  rated:  {handler: echo, limits: {rate: 20/s}, concurrency: {min: 4, max: 16}}
  run5:   {handler: sleep, with: {ms: 300}, limits: {running: 5}, concurrency: {min: 4, max: 8}}
  perkey: {handler: sleep, with: {ms: 20}, limits: {key: kind, running_per_key: 1}, concurrency: {min: 4, max: 8}}
`

// TestLimitsAcrossSatelliteProcesses: three dsat worker processes share
// the limits, on one Redis and on a 3-master cluster (6 partitions over
// the masters, the limiters in one slot each). rate 20/s: no 1-second
// window holds more than 20 ACKs, and at least 18/s are begun over the
// 30 s run; running 5: never more than 5 ACKed and not ended at once;
// running_per_key 1: never two of one key at once, and the busiest keys
// read while it runs (LimitUsage.Keys) are a and b with one permit each.
func TestLimitsAcrossSatelliteProcesses(t *testing.T) {
	for _, backend := range []string{"standalone", "cluster"} {
		t.Run(backend, func(t *testing.T) {
			var r *rig
			if backend == "cluster" {
				cl := startCluster(t)
				r = newRig(t, cl.client(t), cl.url(), limitsYAML)
			} else {
				s, rdb := standalone(t, "everysec")
				r = newRig(t, rdb, "redis://"+s.Addr, limitsYAML)
			}
			r.submit(600) // 30 s at 20/s
			for _, w := range []string{"w1", "w2", "w3"} {
				r.worker(w)
			}
			// While it runs, the busiest keys of perkey are a and b, each
			// with its one permit at most.
			for deadline, seen := time.Now().Add(20*time.Second), false; !seen; time.Sleep(20 * time.Millisecond) {
				u, err := r.c.LimitUsages(r.ctx, r.p)
				if err != nil {
					t.Fatal(err)
				}
				for _, k := range u["perkey"].Keys {
					if (k.Key != "a" && k.Key != "b") || k.Running != 1 {
						t.Fatalf("perkey's busiest keys %+v", u["perkey"].Keys)
					}
					seen = true
				}
				if time.Now().After(deadline) {
					t.Fatal("perkey's busiest keys never showed a key")
				}
			}
			r.waitFinal(90 * time.Second)
			evs := map[string][]dsat.Event{}
			for _, id := range r.ids {
				h, err := r.c.History(r.ctx, id, "", 0)
				if err != nil {
					t.Fatal(err)
				}
				for _, e := range h {
					if eventcheck.Runs(e) {
						evs[e.Step] = append(evs[e.Step], e)
					}
				}
			}
			for _, s := range evs {
				eventcheck.Sort(s)
			}
			acks := eventcheck.ACKTimes(evs["rated"])
			if most := eventcheck.MostInWindow(acks, time.Second); most > 20 {
				t.Errorf("rated: %d ACKs in one second, want at most 20", most)
			}
			if n, span := len(acks), acks[len(acks)-1].Sub(acks[0]); float64(n-20)/span.Seconds() < 18 {
				t.Errorf("rated: %d ACKs in %s after the first second's 20: under 18/s", n-20, span)
			}
			t.Logf("rated: %d ACKs from %s to %s (%.1f/s after the first 20)", len(acks), acks[0].Format("05.000"),
				acks[len(acks)-1].Format("05.000"), float64(len(acks)-20)/acks[len(acks)-1].Sub(acks[0]).Seconds())
			if n := eventcheck.MostRunning(evs["run5"]); n > 5 || n < 4 {
				t.Errorf("run5: at most %d ACKed and not ended at once, want 5", n)
			}
			byKind := map[string][]dsat.Event{}
			kinds := map[string]string{}
			for i, id := range r.ids {
				kinds[id] = map[bool]string{true: "b", false: "a"}[i%3 == 0]
			}
			for _, e := range evs["perkey"] {
				byKind[kinds[e.Task]] = append(byKind[kinds[e.Task]], e)
			}
			for k, es := range byKind {
				if n := eventcheck.MostRunning(es); n != 1 {
					t.Errorf("perkey: key %s had %d at once, want 1", k, n)
				}
			}
			if u, err := r.c.LimitUsages(r.ctx, r.p); err != nil || u["run5"].Running != 0 || len(u["perkey"].Keys) != 0 {
				t.Errorf("permits (or busy keys) left after the drain: %+v %v", u, err)
			}
		})
	}
}
