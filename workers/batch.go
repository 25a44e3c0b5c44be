package workers

import (
	"context"
	"runtime"
	"sync"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/wait"
)

// batcher gathers items for batched Redis calls: the first caller to add
// an item while no batch is in flight sends every item queued so far with
// send, and keeps going while more arrive; the others only queue theirs.
// No goroutine of its own, no waiting to fill a batch: under load items
// share round trips, at low rates each goes at once.
type batcher[T any] struct {
	mu      sync.Mutex
	queue   []T
	sending bool
}

// add queues x and, when no batch is in flight, sends until the queue is
// empty. send must settle every item it gets.
func (b *batcher[T]) add(x T, send func([]T)) {
	b.mu.Lock()
	b.queue = append(b.queue, x)
	if b.sending {
		b.mu.Unlock()
		return
	}
	b.sending = true
	b.mu.Unlock()
	// Let the goroutines that are about to add (the other jobs of a read
	// batch, whose handlers return at about the same time) join this batch.
	runtime.Gosched()
	b.mu.Lock()
	for {
		batch := b.queue
		b.queue = nil
		b.mu.Unlock()
		send(batch)
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.sending = false
			b.mu.Unlock()
			return
		}
	}
}

// completer records handler results in batches (batcher); each caller
// waits for its own result.
type completer struct {
	s *Satellite
	b batcher[*pendingCompletion]
}

type pendingCompletion struct {
	c    dsat.Completion
	out  dsat.Outcome
	err  error
	done chan struct{}
}

// complete records one completion and returns its outcome.
func (b *completer) complete(c dsat.Completion) (dsat.Outcome, error) {
	p := &pendingCompletion{c: c, done: make(chan struct{})}
	b.b.add(p, b.send)
	<-p.done
	return p.out, p.err
}

// send runs one batch, retrying the calls that failed (each is
// idempotent; see inBatches).
func (b *completer) send(batch []*pendingCompletion) {
	failed := inBatches(b.s.engineCtxOr(), batch, func(ctx context.Context, chunk []*pendingCompletion) []*pendingCompletion {
		cs := make([]dsat.Completion, len(chunk))
		for i, p := range chunk {
			cs[i] = p.c
		}
		outs, errs := b.s.c.CompleteBatch(ctx, cs)
		var again []*pendingCompletion
		for i, p := range chunk {
			p.out, p.err = outs[i], errs[i]
			if p.err != nil && retryable(p.err) && b.s.engineCtxOr().Err() == nil {
				again = append(again, p)
				continue
			}
			close(p.done)
		}
		return again
	})
	for _, p := range failed {
		close(p.done)
	}
}

// inBatches calls send for items in batches, each with a 10s deadline, and
// sends again, a few times with a growing backoff, the items send returns
// (a failed call that may be retried). Each retry uses batches of half the
// size: a batch whose script runs longer than the client's read timeout
// would otherwise fail the same way forever. It returns the items that
// still failed after the last try.
func inBatches[T any](ctx context.Context, items []T, send func(ctx context.Context, chunk []T) (again []T)) []T {
	size, backoff := len(items), 50*time.Millisecond
	for try := 0; try < 5 && len(items) > 0; try++ {
		if try > 0 {
			wait.Sleep(ctx, backoff)
			backoff *= 2
			size = max(1, size/2)
		}
		var again []T
		for _, chunk := range chunks(items, size) {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			again = append(again, send(cctx, chunk)...)
			cancel()
		}
		items = again
	}
	return items
}

// chunks splits items into consecutive slices of at most size.
func chunks[T any](items []T, size int) [][]T {
	var out [][]T
	for len(items) > size {
		out = append(out, items[:size])
		items = items[size:]
	}
	return append(out, items)
}
