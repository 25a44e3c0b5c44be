//go:build integration

package integration

import (
	"context"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// TestPrioritiesOnCluster (issue 16): on the 3-master cluster, a pipeline
// whose 6 partitions are spread over the masters: with 60 low tasks, then
// 12 high ones waiting, reads of 100 take every high token (from all the
// partitions) before any low one; every token is read once; the loads
// count the three levels.
func TestPrioritiesOnCluster(t *testing.T) {
	fullSuite(t)
	cl := startCluster(t)
	rc := cl.client(t)
	ctx := context.Background()
	p, err := dsat.ParsePipeline("p.yaml", []byte("name: prio\nversion: 1.0.0\npartitions: 6\nsteps:\n  a: {handler: echo}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rc, dsat.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	r := c.NewStepReader(p, "a", "c1")
	if err := r.EnsureGroups(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.EnablePriorities(ctx); err != nil {
		t.Fatal(err)
	}
	submit := func(n int, level dsat.Priority) {
		payloads := make([][]byte, n)
		for i := range payloads {
			payloads[i] = []byte(`{}`)
		}
		if _, err := c.SubmitBatch(ctx, "prio", payloads, dsat.SubmitOptions{Priority: level}); err != nil {
			t.Fatal(err)
		}
	}
	submit(60, dsat.PriorityLow)
	submit(12, dsat.PriorityHigh)
	if err := c.RefreshPriorities(ctx); err != nil || !c.PrioritiesUsed("prio") {
		t.Fatalf("the pipeline is not marked: %v", err)
	}
	loads, err := c.StepLoads(ctx, p)
	if err != nil || loads["a"].Backlog != 72 {
		t.Fatalf("loads %+v %v, want a backlog of 72", loads, err)
	}
	var order []dsat.Priority
	seen := map[string]bool{}
	for i := 0; i < 20 && len(order) < 72; i++ {
		es, err := r.ReadNew(ctx, 100, 10*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			key := e.Part.Tag() + e.Priority.String() + e.ID
			if seen[key] {
				t.Fatalf("entry %s read twice", key)
			}
			seen[key] = true
			order = append(order, e.Priority)
		}
	}
	if len(order) != 72 {
		t.Fatalf("read %d tokens, want 72", len(order))
	}
	for i, level := range order {
		if (i < 12) != (level == dsat.PriorityHigh) {
			t.Fatalf("token %d read is %s: want the 12 high ones first (%v)", i, level, order)
		}
	}
}
