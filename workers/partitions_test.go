package workers

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const fourPartitions = `
name: four
version: 1.0.0
partitions: 4
steps:
  a: {handler: hold, concurrency: {min: 2, max: 2}}
`

// TestPoolLimitAcrossPartitions: one XREADGROUP over several partition
// streams returns up to COUNT entries from each stream; the satellite must
// still run no more handlers than its pool allows, and run every token it
// read.
func TestPoolLimitAcrossPartitions(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, fourPartitions)
		var running, most atomic.Int64
		m := NewMux()
		m.HandleFunc("hold", func(ctx context.Context, task *dsat.Task) (dsat.Result, error) {
			n := running.Add(1)
			for {
				old := most.Load()
				if n <= old || most.CompareAndSwap(old, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
			return dsat.Result{Output: []byte(`{}`)}, nil
		})
		ids := b.submit(24, `{}`) // six per partition, queued before the satellite reads
		b.start(m, b.fast("s1"))
		for _, st := range b.wait(ids, 20*time.Second) {
			if st.Status != dsat.StatusSucceeded {
				t.Fatalf("task %s: %s", st.ID, st.Status)
			}
		}
		if got := most.Load(); got > 2 {
			t.Fatalf("%d handlers ran at once; the step's concurrency is 2", got)
		}
		b.streamsEmpty()
	})
}
