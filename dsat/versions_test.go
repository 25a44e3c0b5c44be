package dsat_test

import (
	"context"
	"errors"
	"strings"
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

// TestDrainingPipelines: the recorded definition of a stranded version
// comes back parsed and Draining (with its partitions); a version whose
// definition is not on record (an older dsat recorded it) is an error
// wrapping ErrPipelineNotFound, and the others come back anyway. A client
// that loads a draining version beside an older one from a file submits
// to the file's; Submit refuses a pipeline loaded only draining.
func TestDrainingPipelines(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		ctx := context.Background()
		rdb, _ := b.New(t)
		yamls := []string{"name: a\nversion: 2.1.0\npartitions: 3\nsteps:\n  s: {handler: echo}\n",
			"name: b\nversion: 1.0.0\nsteps:\n  s: {handler: echo}\n"}
		var ps []*dsat.Pipeline
		for _, y := range yamls {
			p, err := dsat.ParsePipeline("p.yaml", []byte(y))
			if err != nil {
				t.Fatal(err)
			}
			ps = append(ps, p)
		}
		rec, err := dsat.NewClient(rdb, dsat.Config{}, ps...)
		if err != nil {
			t.Fatal(err)
		}
		if err := rec.RecordVersions(ctx); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HDel(ctx, rec.Keys().VersionDefinitions(), "b@1.0").Err(); err != nil {
			t.Fatal(err)
		}
		got, err := rec.DrainingPipelines(ctx, []dsat.StrandedVersion{{Pipeline: "a", API: "2.1"}, {Pipeline: "b", API: "1.0"}})
		if !errors.Is(err, dsat.ErrPipelineNotFound) || !strings.Contains(err.Error(), "b@1.0") {
			t.Fatalf("b without a recorded definition: %v", err)
		}
		if len(got) != 1 || got[0].Name != "a" || got[0].Version.String() != "2.1.0" || got[0].Partitions != 3 || !got[0].Draining {
			t.Fatalf("draining: %+v", got)
		}
		older, err := dsat.ParsePipeline("p.yaml", []byte("name: a\nversion: 1.0.0\nsteps:\n  s: {handler: echo}\n"))
		if err != nil {
			t.Fatal(err)
		}
		c, err := dsat.NewClient(rdb, dsat.Config{}, got[0], older)
		if err != nil {
			t.Fatal(err)
		}
		if sub, err := c.Submit(ctx, "a", []byte(`{}`), dsat.SubmitOptions{}); err != nil || !strings.HasSuffix(sub.ID, ".a.1.0.0") {
			t.Fatalf("submit beside a draining 2.1: %+v %v, want a task of the file's 1.0", sub, err)
		}
		only, err := dsat.NewClient(rdb, dsat.Config{}, got[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := only.Submit(ctx, "a", []byte(`{}`), dsat.SubmitOptions{}); !errors.Is(err, dsat.ErrPipelineNotFound) {
			t.Fatalf("submit to a pipeline loaded only draining: %v", err)
		}
		if _, _, err := only.PutSchedule(ctx, dsat.ScheduleSpec{ID: "s", Pipeline: "a", Every: "1m"}); !errors.Is(err, dsat.ErrPipelineNotFound) {
			t.Fatalf("a schedule of a pipeline loaded only draining: %v", err)
		}
	})
}
