package dsat_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

func BenchmarkEnvelopeParse(b *testing.B) {
	e := dsat.Envelope{Task: dsat.NewTaskID(dsat.Partition{Pipeline: "p", API: "1.0"}, time.Now()).String(), Step: "s",
		Token: "1", Attempt: 1, V: dsat.EnvelopeVersion, PV: dsat.MustParseVersion("1.0"), CT: dsat.DefaultContentType,
		Payload: []byte(`{"text":"a payload of about a hundred bytes, which is what the benchmarks use......"}`), TS: 1}
	f := e.Fields()
	values := map[string]any{}
	for i := 0; i < len(f); i += 2 {
		values[f[i].(string)] = f[i+1]
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := dsat.ParseEnvelope(values, 0); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkKeys(b *testing.B) {
	k := dsat.NewKeys("")
	p := dsat.Partition{Pipeline: "textstats", API: "1.2", N: 3}
	id := dsat.NewTaskID(p, time.Now()).String()
	b.ReportAllocs()
	for b.Loop() {
		_ = k.Task(p, id)
		_ = k.TaskEvents(p, id)
		_ = k.Step(p, "lang")
		if _, err := dsat.ParseTaskID(id); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkScripts runs one task through a 3-step pipeline per iteration
// on a real redis-server: submit, then begin and complete for each step.
func BenchmarkScripts(b *testing.B) {
	rdb := redistest.Start(b).Client(b)
	p, err := dsat.ParsePipeline("b.yaml", []byte(linearYAML))
	if err != nil {
		b.Fatal(err)
	}
	c, _ := dsat.NewClient(rdb, dsat.Config{}, p)
	ctx := context.Background()
	for _, s := range p.Order {
		rdb.XGroupCreateMkStream(ctx, c.Keys().Step(p.Partition(0), s), s, "0")
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Submit(ctx, "linear", []byte(`{"x":1}`), dsat.SubmitOptions{}); err != nil {
			b.Fatal(err)
		}
		for _, s := range p.Order {
			res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{Group: s, Consumer: "w", Streams: []string{c.Keys().Step(p.Partition(0), s), ">"}, Count: 1, Block: -1}).Result()
			if err != nil {
				b.Fatal(err)
			}
			m := res[0].Messages[0]
			env, err := dsat.ParseEnvelope(m.Values, 0)
			if err != nil {
				b.Fatal(err)
			}
			d := dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: "w"}
			if _, err := c.Begin(ctx, d); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Complete(ctx, d, env.Payload, ""); err != nil {
				b.Fatal(err)
			}
		}
	}
}
