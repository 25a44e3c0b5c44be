package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestWarnStranded: a process that loads pipeline p 2.0 warns, at start,
// about the unfinished tasks of p 1.0 that an earlier process loaded.
func TestWarnStranded(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		ctx := context.Background()
		rdb, _ := b.New(t)
		client := func(version string) *dsat.Client {
			p, err := dsat.ParsePipeline("p.yaml", []byte("name: p\nversion: "+version+"\nsteps:\n  a: {handler: echo}\n"))
			if err != nil {
				t.Fatal(err)
			}
			c, err := dsat.NewClient(rdb, dsat.Config{}, p)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}
		var logs bytes.Buffer
		old := client("1.0.0")
		warnStranded(ctx, old, zerolog.New(&logs))
		if _, err := old.Submit(ctx, "p", []byte(`{}`), dsat.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		if logs.Len() != 0 {
			t.Fatalf("warned with nothing stranded: %s", logs.String())
		}
		warnStranded(ctx, client("2.0.0"), zerolog.New(&logs))
		for _, want := range []string{`"level":"warn"`, `"pipeline":"p"`, `"api":"1.0"`, `"unfinished":1`, "does not load"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("missing %s in %s", want, logs.String())
			}
		}
	})
}
