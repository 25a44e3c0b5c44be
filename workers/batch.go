package workers

import (
	"context"
	"sync"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// completer records handler results in batches: the first job to finish
// while no batch is in flight sends every completion queued so far in one
// pipeline, and keeps going while more arrive; the others wait for their
// result. No goroutine of its own, no waiting to fill a batch: under load
// completions share round trips, at low rates each goes at once.
type completer struct {
	s       *Satellite
	mu      sync.Mutex
	queue   []*pendingCompletion
	sending bool
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
	b.mu.Lock()
	b.queue = append(b.queue, p)
	if b.sending {
		b.mu.Unlock()
		<-p.done
		return p.out, p.err
	}
	b.sending = true
	for {
		batch := b.queue
		b.queue = nil
		b.mu.Unlock()
		b.send(batch)
		b.mu.Lock()
		if len(b.queue) == 0 {
			b.sending = false
			b.mu.Unlock()
			break
		}
	}
	<-p.done
	return p.out, p.err
}

// send runs one batch, retrying the calls that failed (each is
// idempotent) a few times with backoff, in smaller batches each time (a
// batch slower than the read timeout would otherwise fail forever).
func (b *completer) send(batch []*pendingCompletion) {
	todo := batch
	size := len(todo)
	backoff := 50 * time.Millisecond
	for try := 0; try < 5 && len(todo) > 0; try++ {
		if try > 0 {
			sleep(b.s.engineCtxOr(), backoff)
			backoff *= 2
			size = max(1, size/2)
		}
		var again []*pendingCompletion
		for _, chunk := range chunks(todo, size) {
			cs := make([]dsat.Completion, len(chunk))
			for i, p := range chunk {
				cs[i] = p.c
			}
			ctx, cancel := context.WithTimeout(b.s.engineCtxOr(), 10*time.Second)
			outs, errs := b.s.c.CompleteBatch(ctx, cs)
			cancel()
			for i, p := range chunk {
				p.out, p.err = outs[i], errs[i]
				if p.err != nil && retryable(p.err) && b.s.engineCtxOr().Err() == nil {
					again = append(again, p)
					continue
				}
				close(p.done)
			}
		}
		todo = again
	}
	for _, p := range todo {
		close(p.done)
	}
}
