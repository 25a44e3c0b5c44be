package dsat_test

import (
	"context"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestStrandedVersions: a client that loads pipeline "old" 2.0 finds the
// unfinished tasks (pending, scheduled, running) of "old" 1.0, which
// another process recorded and it does not load; none of a version it
// loads, none once they ended, and nothing before any record.
func TestStrandedVersions(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		ctx := context.Background()
		rdb, _ := b.New(t)
		parse := func(y string) *dsat.Pipeline {
			p, err := dsat.ParsePipeline("p.yaml", []byte(y))
			if err != nil {
				t.Fatal(err)
			}
			return p
		}
		old1 := parse("name: old\nversion: 1.0.0\npartitions: 3\nsteps:\n  a: {handler: echo}\n")
		old2 := parse("name: old\nversion: 2.0.0\nsteps:\n  a: {handler: echo}\n")
		keep := parse("name: keep\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
		v1, err := dsat.NewClient(rdb, dsat.Config{}, old1, keep)
		if err != nil {
			t.Fatal(err)
		}
		v2, err := dsat.NewClient(rdb, dsat.Config{}, old2, keep)
		if err != nil {
			t.Fatal(err)
		}
		stranded := func(c *dsat.Client) []dsat.StrandedVersion {
			t.Helper()
			s, err := c.StrandedVersions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			return s
		}
		ids, err := v1.SubmitBatch(ctx, "old", [][]byte{[]byte(`{}`), []byte(`{}`), []byte(`{}`)}, dsat.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		later, err := v1.Submit(ctx, "old", []byte(`{}`), dsat.SubmitOptions{RunAt: time.Now().Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := v1.Submit(ctx, "keep", []byte(`{}`), dsat.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		if s := stranded(v2); len(s) != 0 {
			t.Fatalf("stranded before any record: %+v", s)
		}
		for _, c := range []*dsat.Client{v1, v2} {
			if err := c.RecordVersions(ctx); err != nil {
				t.Fatal(err)
			}
		}
		if s := stranded(v2); len(s) != 1 || s[0] != (dsat.StrandedVersion{Pipeline: "old", API: "1.0", Unfinished: 4}) {
			t.Fatalf("stranded seen by 2.0: %+v, want old 1.0 with 4", s)
		}
		if s := stranded(v1); len(s) != 0 {
			t.Fatalf("stranded seen by 1.0, which loads it: %+v", s)
		}
		for _, id := range append(ids, later.ID) {
			if err := v1.Cancel(ctx, id, "test"); err != nil {
				t.Fatal(err)
			}
		}
		if s := stranded(v2); len(s) != 0 {
			t.Fatalf("stranded once they ended: %+v", s)
		}
	})
}
