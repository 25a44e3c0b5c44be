package httpapi

import (
	"context"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestHubsCloseStopsReaders: every firehose reader goroutine has an
// owner (hubs) and an exit: close stops them and returns once they have.
func TestHubsCloseStopsReaders(t *testing.T) {
	// Not parallel: it looks for hub readers in every goroutine's stack.
	rdb, _ := redistest.Backends()[1].New(t) // real Redis: a blocked XREAD does not end with its context
	c := demoClient(t, rdb)
	p, _ := c.Pipeline("demo")
	hs := newHubs(c, zerolog.Nop(), NewMetrics(c))
	for n := 0; n < p.Partitions; n++ {
		if _, err := hs.subscribe(context.Background(), p.Partition(n), newSubscriber("")); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan struct{})
	go func() { hs.close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("close did not return")
	}
	buf := make([]byte, 1<<20)
	if stacks := string(buf[:runtime.Stack(buf, true)]); strings.Contains(stacks, "(*hubs).read") {
		t.Fatalf("a firehose reader is still running after close:\n%s", stacks)
	}
}
