package workers

import (
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

func TestRunnersReuseGoroutines(t *testing.T) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var ran atomic.Int64
	finished := make(chan struct{}, 1)
	rs := newRunners(done, &wg, func(*job) {
		ran.Add(1)
		finished <- struct{}{}
	})
	// One job at a time: after the first, each goes to a goroutine that
	// ran an earlier one, now idle.
	for range 200 {
		rs.start(&job{})
		<-finished
		for rs.idle.Load() == 0 { // the goroutine is back waiting for a job
			runtime.Gosched()
		}
	}
	// A job can be handed out in the instant between a goroutine counting
	// itself idle and waiting, so an extra goroutine may start now and then
	// (it exits when idle); without reuse this would be 200.
	if n := rs.started.Load(); n > 5 {
		t.Fatalf("%d goroutines for 200 jobs run one at a time, want a few at most", n)
	}
	if ran.Load() != 200 {
		t.Fatalf("ran %d jobs", ran.Load())
	}
	// Jobs started together each get a goroutine.
	block := make(chan struct{})
	var started sync.WaitGroup
	started.Add(5)
	rs2 := newRunners(done, &wg, func(*job) { started.Done(); <-block })
	for range 5 {
		rs2.start(&job{})
	}
	started.Wait()
	if n := rs2.started.Load(); n != 5 {
		t.Fatalf("%d goroutines for 5 jobs at once, want 5", n)
	}
	close(block)
	// Once reading stops, every goroutine exits.
	close(done)
	exited := make(chan struct{})
	go func() { wg.Wait(); close(exited) }()
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		t.Fatal("runner goroutines did not exit after done")
	}
}

// TestRunnerOfVersion: with two versions of a pipeline loaded (one
// draining), a partition's step is its own version's runner.
func TestRunnerOfVersion(t *testing.T) {
	t.Parallel()
	var rs []*stepRunner
	for _, y := range []string{"name: p\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n", "name: p\nversion: 2.0.0\nsteps:\n  a: {handler: echo}\n"} {
		p, err := dsat.ParsePipeline("p.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, &stepRunner{p: p, step: p.Steps["a"]})
	}
	s := &Satellite{steps: rs}
	for i, r := range rs {
		if got := s.runnerOf(r.p.Partition(0), "a"); got != r {
			t.Errorf("version %d.0: runner of %v", i+1, got.p.Version)
		}
	}
}
