//go:build integration

package integration

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// TestStatsAndBreakerOnCluster: on the 3-master cluster, one RecordStats
// call writes the buckets of two pipelines (two slots: {stats:<name>}),
// Stats reads each back, and the buckets expire; a breaker's transition
// (slot {breakers}) is published once, in the firehose of partition 0 of
// a pipeline whose partitions are spread over the masters, and counted.
func TestStatsAndBreakerOnCluster(t *testing.T) {
	fullSuite(t)
	cl := startCluster(t)
	rc := cl.client(t)
	ctx := context.Background()
	var ps []*dsat.Pipeline
	for _, y := range []string{
		"name: spread\nversion: 1.0.0\npartitions: 6\nsteps:\n  a: {handler: echo, breaker: {failures: 1, within: 1m, open_for: 1m}}\n",
		"name: other\nversion: 1.0.0\nsteps:\n  x: {handler: echo}\n",
	} {
		p, err := dsat.ParsePipeline("p.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	c, err := dsat.NewClient(rc, dsat.Config{}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	k1, k2 := c.Keys().Stats("spread", time.Now().Truncate(dsat.StatsBucket).Unix()), c.Keys().Stats("other", time.Now().Truncate(dsat.StatsBucket).Unix())
	m1, _ := masterOf(ctx, rc, k1)
	m2, _ := masterOf(ctx, rc, k2)
	t.Logf("stats buckets on %s and %s", m1, m2)
	var run dsat.LatencyHistogram
	run.Add(5 * time.Millisecond)
	if err := c.RecordStats(ctx, time.Now(), []dsat.StepSample{{Pipeline: "spread", Step: "a", Ended: 7, Run: run}, {Pipeline: "other", Step: "x", Ended: 3, Failed: 1}}); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]int64{"spread": 7, "other": 3} {
		st, err := c.Stats(ctx, name, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range st.Steps {
			if s.Totals.Ended != want {
				t.Fatalf("%s: %+v, want %d ended", name, s.Totals, want)
			}
		}
	}
	for _, k := range []string{k1, k2} {
		if ttl := rc.TTL(ctx, k).Val(); ttl < 15*time.Minute || ttl > 17*time.Minute {
			t.Fatalf("TTL of %s: %v, want about 16 min", k, ttl)
		}
	}

	p0 := ps[0].Partition(0)
	last, err := c.FirehoseLast(ctx, p0)
	if err != nil {
		t.Fatal(err)
	}
	if opened, err := c.BreakerFailed(ctx, "spread", "a", "w1"); err != nil || !opened {
		t.Fatalf("open the breaker: %v %v", opened, err)
	}
	entries, err := c.FirehoseRange(ctx, p0, last, 100)
	if err != nil || len(entries) != 1 || len(entries[0].Events) != 1 || entries[0].Events[0].Event != dsat.EventBreaker {
		t.Fatalf("partition 0's firehose after the breaker opened: %+v %v", entries, err)
	}
	var d dsat.BreakerDetail
	if err := json.Unmarshal(entries[0].Events[0].Detail, &d); err != nil || d.State != dsat.BreakerOpen {
		t.Fatalf("BREAKER detail %s: %v", entries[0].Events[0].Detail, err)
	}
	for n := 1; n < 6; n++ {
		if l, _ := c.FirehoseLast(ctx, ps[0].Partition(n)); l != "0-0" {
			t.Fatalf("partition %d's firehose got an entry (%s): the event goes to partition 0 only", n, l)
		}
	}
	if moves, err := c.BreakerTransitions(ctx); err != nil || moves["spread/a"]["open"] != 1 {
		t.Fatalf("transitions %v %v", moves, err)
	}
}
