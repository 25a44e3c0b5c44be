package httpapi

import (
	"context"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestMetricsTwoVersions: with two versions of a pipeline loaded (a
// draining one beside its successor, or two files), a step's backlog is
// collected once, summed over the versions, and its breaker once: a
// registry refuses a metric collected twice, and /metrics would fail.
func TestMetricsTwoVersions(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		ctx := context.Background()
		rdb, _ := b.New(t)
		var ps []*dsat.Pipeline
		for _, v := range []string{"1.0.0", "2.0.0"} {
			p, err := dsat.ParsePipeline("p.yaml", []byte("name: p\nversion: "+v+"\nsteps:\n  a: {handler: echo, breaker: {}}\n"))
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
			c, err := dsat.NewClient(rdb, dsat.Config{}, ps...)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.Submit(ctx, "p", []byte(`{}`), dsat.SubmitOptions{}); err != nil {
				t.Fatal(err)
			}
		}
		c, err := dsat.NewClient(rdb, dsat.Config{}, ps...)
		if err != nil {
			t.Fatal(err)
		}
		m := NewMetrics(c)
		mfs, err := m.Registry.Gather()
		if err != nil {
			t.Fatalf("gather: %v", err)
		}
		got := map[string][]float64{}
		for _, mf := range mfs {
			for _, mt := range mf.GetMetric() {
				if g := mt.GetGauge(); g != nil {
					got[mf.GetName()] = append(got[mf.GetName()], g.GetValue())
				}
			}
		}
		if b := got["dsat_step_backlog"]; len(b) != 1 || b[0] != 2 {
			t.Fatalf("dsat_step_backlog %v, want one series of 2 (1 + 1)", b)
		}
		if n := len(got["dsat_breaker_state"]); n != 3 {
			t.Fatalf("%d breaker states, want 3", n)
		}
	})
}
