package workers

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// onceScript is examples/process/worker.py's work as a one-shot exec
// script: one process per token.
const onceScript = `import json, sys
payload = json.load(sys.stdin)
print(json.dumps({"text": payload["text"].upper() + "!"}))
`

// BenchmarkProcessVsExec measures tokens per second through a step served
// by long-lived Python processes (process, examples/process/worker.py,
// processes: 4) against the same work through exec running a one-shot
// Python script, both with a pool of 4 on one satellite, against a
// redis-server the benchmark starts. Each iteration is one interleaved
// pair (a process run of 2,000 tokens, an exec run of 200); it reports
// each rate's median and the ratio's median, min and max over the pairs:
//
//	go test ./workers -run '^$' -bench ProcessVsExec -benchtime 5x
func BenchmarkProcessVsExec(b *testing.B) {
	if _, err := exec.LookPath("python3"); err != nil {
		b.Skip("python3 not found")
	}
	worker, err := filepath.Abs(filepath.Join("..", "examples", "process", "worker.py"))
	if err != nil {
		b.Fatal(err)
	}
	once := filepath.Join(b.TempDir(), "once.py")
	if err := os.WriteFile(once, []byte(onceScript), 0o644); err != nil {
		b.Fatal(err)
	}
	var ps []*dsat.Pipeline
	for name, with := range map[string]string{
		"proc":    fmt.Sprintf(`{handler: process, with: {command: [python3, %q], processes: 4, suffix: "!"}`, worker),
		"oneshot": fmt.Sprintf(`{handler: exec, with: {command: [python3, %q]}`, once),
	} {
		p, err := dsat.ParsePipeline(name+".yaml", []byte(fmt.Sprintf("name: %s\nversion: 1.0.0\nsteps:\n  up: %s, concurrency: {min: 4, max: 4}}\n", name, with)))
		if err != nil {
			b.Fatal(err)
		}
		ps = append(ps, p)
	}
	c, err := dsat.NewClient(redistest.Start(b).Client(b), dsat.Config{}, ps...)
	if err != nil {
		b.Fatal(err)
	}
	var done, failed atomic.Int64
	m := NewMux()
	RegisterBuiltins(m, 0)
	sat, err := New(c, m, Config{ID: "bench", OnResult: func(_, _, outcome string, _ time.Duration) {
		if outcome != "ok" {
			failed.Add(1)
		}
		done.Add(1)
	}})
	if err != nil {
		b.Fatal(err)
	}
	if err := sat.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	defer sat.Stop(context.Background())
	run := func(pipeline string, n int) float64 {
		payloads := make([][]byte, n)
		for i := range payloads {
			payloads[i] = []byte(`{"text":"a payload of about a hundred bytes, which is what the benchmarks use, more or less"}`)
		}
		start, before := time.Now(), done.Load()
		if _, err := c.SubmitBatch(context.Background(), pipeline, payloads); err != nil {
			b.Fatal(err)
		}
		for done.Load()-before < int64(n) {
			time.Sleep(time.Millisecond)
		}
		if failed.Load() > 0 {
			b.Fatalf("%d tokens failed", failed.Load())
		}
		return float64(n) / time.Since(start).Seconds()
	}
	run("proc", 40) // the processes start
	run("oneshot", 8)
	var procRates, execRates, ratios []float64
	for b.Loop() {
		pr, er := run("proc", 2000), run("oneshot", 200)
		procRates, execRates, ratios = append(procRates, pr), append(execRates, er), append(ratios, pr/er)
		b.Logf("pair %d: process %.0f tokens/s, exec %.1f tokens/s, ratio %.1f", len(ratios), pr, er, pr/er)
	}
	b.ReportMetric(median(procRates), "process_tokens/s")
	b.ReportMetric(median(execRates), "exec_tokens/s")
	b.ReportMetric(median(ratios), "ratio_median")
	b.ReportMetric(slices.Min(ratios), "ratio_min")
	b.ReportMetric(slices.Max(ratios), "ratio_max")
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}
