//go:build integration

package integration

import (
	"context"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
)

// TestStrandedVersionsOnCluster: on the 3-master cluster, a client that
// loads only pipeline "old" 2.0 counts the unfinished tasks of "old" 1.0,
// whose 6 partitions are spread over the masters.
func TestStrandedVersionsOnCluster(t *testing.T) {
	fullSuite(t)
	cl := startCluster(t)
	rc := cl.client(t)
	ctx := context.Background()
	client := func(y string) *dsat.Client {
		p, err := dsat.ParsePipeline("p.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		c, err := dsat.NewClient(rc, dsat.Config{}, p)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.RecordVersions(ctx); err != nil {
			t.Fatal(err)
		}
		return c
	}
	v1 := client("name: old\nversion: 1.0.0\npartitions: 6\nsteps:\n  a: {handler: echo}\n")
	v2 := client("name: old\nversion: 2.0.0\nsteps:\n  a: {handler: echo}\n")
	masters := map[string]bool{}
	for n := range 6 {
		m, _ := masterOf(ctx, rc, v1.Keys().TaskIndex(dsat.Partition{Pipeline: "old", API: "1.0", N: n}))
		masters[m] = true
	}
	if len(masters) < 2 {
		t.Fatalf("the 6 partitions' indexes are on %d master(s); the test needs them spread", len(masters))
	}
	payloads := make([][]byte, 60)
	for i := range payloads {
		payloads[i] = []byte(`{}`)
	}
	if _, err := v1.SubmitBatch(ctx, "old", payloads, dsat.SubmitOptions{}); err != nil {
		t.Fatal(err)
	}
	s, err := v2.StrandedVersions(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(s) != 1 || s[0] != (dsat.StrandedVersion{Pipeline: "old", API: "1.0", Unfinished: 60}) {
		t.Fatalf("stranded %+v, want old 1.0 with 60 over %d masters", s, len(masters))
	}
}
