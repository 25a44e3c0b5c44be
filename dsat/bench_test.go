package dsat_test

import (
	"context"
	"strconv"
	"strings"
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
		_ = k.TaskLog(p, id)
		_ = k.Step(p, "lang")
		if _, err := dsat.ParseTaskID(id); err != nil {
			b.Fatal(err)
		}
	}
}

// scriptBench starts redis-server with the linear pipeline's groups made.
func scriptBench(b *testing.B) (*redis.Client, *dsat.Client, *dsat.Pipeline) {
	rdb := redistest.Start(b).Client(b)
	p, err := dsat.ParsePipeline("b.yaml", []byte(linearYAML))
	if err != nil {
		b.Fatal(err)
	}
	c, _ := dsat.NewClient(rdb, dsat.Config{}, p)
	for _, s := range p.Order {
		rdb.XGroupCreateMkStream(context.Background(), c.Keys().Step(p.Partition(0), s), s, "0")
	}
	return rdb, c, p
}

// readDeliveries reads up to count new tokens of step as worker "w"
// (none when the stream is drained).
func readDeliveries(b *testing.B, rdb *redis.Client, c *dsat.Client, p *dsat.Pipeline, step string, count int64) []dsat.Delivery {
	res, err := rdb.XReadGroup(context.Background(), &redis.XReadGroupArgs{Group: step, Consumer: "w",
		Streams: []string{c.Keys().Step(p.Partition(0), step), ">"}, Count: count, Block: -1}).Result()
	if err == redis.Nil {
		return nil
	}
	if err != nil {
		b.Fatal(err)
	}
	ds := make([]dsat.Delivery, 0, len(res[0].Messages))
	for _, m := range res[0].Messages {
		env, err := dsat.ParseEnvelope(m.Values, 0)
		if err != nil {
			b.Fatal(err)
		}
		ds = append(ds, dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: "w"})
	}
	return ds
}

// BenchmarkScripts runs one task through a 3-step pipeline per iteration
// on a real redis-server: submit, then begin and complete for each step.
func BenchmarkScripts(b *testing.B) {
	rdb, c, p := scriptBench(b)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Submit(ctx, "linear", []byte(`{"x":1}`), dsat.SubmitOptions{}); err != nil {
			b.Fatal(err)
		}
		for _, s := range p.Order {
			d := readDeliveries(b, rdb, c, p, s, 1)[0]
			if _, err := c.Begin(ctx, d); err != nil {
				b.Fatal(err)
			}
			if _, err := c.Complete(ctx, d, d.Payload, ""); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkScriptsRedisCPU drains 3-step tasks with batched calls (100
// tokens per call, as a satellite does under load) and reports the Redis
// server's own CPU per task-step (redis-µs/step, from INFO cpu), the figure
// that bounds the drain rate. The satellite is not involved, so the figure
// moves only with the scripts. "lazy" is what a satellite does for a
// handler that returns within its begin window (complete only, the ACK
// written by complete); "begun" calls begin first, as for a long handler.
func BenchmarkScriptsRedisCPU(b *testing.B) {
	for _, lazy := range []bool{true, false} {
		name := "begun"
		if lazy {
			name = "lazy"
		}
		b.Run(name, func(b *testing.B) { benchScriptsRedisCPU(b, lazy) })
	}
}

func benchScriptsRedisCPU(b *testing.B, lazy bool) {
	rdb, c, p := scriptBench(b)
	ctx := context.Background()
	const tasks, batch = 2000, 100
	payload := []byte(`{"text":"a payload of about a hundred bytes, which is what the benchmarks use......"}`)
	payloads := make([][]byte, batch)
	for i := range payloads {
		payloads[i] = payload
	}
	var cpu time.Duration
	for b.Loop() {
		b.StopTimer()
		for n := 0; n < tasks; n += batch {
			if _, err := c.SubmitBatch(ctx, "linear", payloads); err != nil {
				b.Fatal(err)
			}
		}
		before := redisCPU(b, rdb)
		b.StartTimer()
		for _, s := range p.Order {
			for ds := readDeliveries(b, rdb, c, p, s, batch); len(ds) > 0; ds = readDeliveries(b, rdb, c, p, s, batch) {
				if !lazy {
					outs, errs := c.BeginBatch(ctx, ds)
					for i, d := range ds {
						if errs[i] != nil || outs[i] != dsat.Applied {
							b.Fatalf("begin %s: %v %v", d.Task, outs[i], errs[i])
						}
					}
				}
				cs := make([]dsat.Completion, 0, len(ds))
				started := time.Now()
				for _, d := range ds {
					d.Started = started
					cs = append(cs, dsat.Completion{Delivery: d, Output: d.Payload})
				}
				outs, errs := c.CompleteBatch(ctx, cs)
				for i := range cs {
					if errs[i] != nil || outs[i] != dsat.Applied {
						b.Fatalf("complete: %v %v", outs[i], errs[i])
					}
				}
			}
		}
		b.StopTimer()
		cpu += redisCPU(b, rdb) - before
		b.StartTimer()
	}
	b.ReportMetric(float64(cpu.Microseconds())/float64(b.N*tasks*len(p.Order)), "redis-µs/step")
}

// redisCPU is the Redis main thread's CPU time so far (INFO cpu).
func redisCPU(b *testing.B, rdb *redis.Client) time.Duration {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\r\n") {
		k, v, _ := strings.Cut(line, ":")
		if k == "used_cpu_user_main_thread" || k == "used_cpu_sys_main_thread" {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				b.Fatal(err)
			}
			total += f
		}
	}
	return time.Duration(total * float64(time.Second))
}

// BenchmarkPromoteTickDelayed measures the promoter's tick (one Promote
// call on a partition) while 100,000 delayed tasks wait in its retry set,
// none of them due, and reports the Redis memory one waiting delayed task
// costs (used_memory growth per task). Issue 15: the tick should stay
// under 50 ms, and a waiting task cost no more than a finished one
// (docs/performance.md).
func BenchmarkPromoteTickDelayed(b *testing.B) {
	rdb, c, p := scriptBench(b)
	ctx := context.Background()
	const n, batch = 100_000, 1000
	payload := []byte(`{"text":"a payload of about a hundred bytes, which is what the benchmarks use......"}`)
	payloads := make([][]byte, batch)
	for i := range payloads {
		payloads[i] = payload
	}
	before := usedMemory(b, rdb)
	for i := 0; i < n/batch; i++ {
		if _, err := c.SubmitBatch(ctx, p.Name, payloads, dsat.SubmitOptions{RunAt: time.Now().Add(time.Hour)}); err != nil {
			b.Fatal(err)
		}
	}
	perTask := float64(usedMemory(b, rdb)-before) / n
	if z := rdb.ZCard(ctx, c.Keys().Retry(p.Partition(0))).Val(); z != n {
		b.Fatalf("retry set holds %d, want %d", z, n)
	}
	b.ResetTimer()
	for b.Loop() {
		if moved, err := c.Promote(ctx, p.Partition(0), 100); err != nil || moved != 0 {
			b.Fatalf("promote: %d %v", moved, err)
		}
	}
	b.ReportMetric(perTask, "B/delayed_task")
}

func usedMemory(b *testing.B, rdb *redis.Client) int64 {
	info := rdb.Info(context.Background(), "memory").Val()
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return n
		}
	}
	b.Fatal("no used_memory in INFO memory")
	return 0
}
