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
// idempotent) a few times with backoff.
func (b *completer) send(batch []*pendingCompletion) {
	todo := batch
	backoff := 50 * time.Millisecond
	for try := 0; try < 5 && len(todo) > 0; try++ {
		if try > 0 {
			sleep(b.s.engineCtxOr(), backoff)
			backoff *= 2
		}
		cs := make([]dsat.Completion, len(todo))
		for i, p := range todo {
			cs[i] = p.c
		}
		ctx, cancel := context.WithTimeout(b.s.engineCtxOr(), 10*time.Second)
		outs, errs := b.s.c.CompleteBatch(ctx, cs)
		cancel()
		var again []*pendingCompletion
		for i, p := range todo {
			p.out, p.err = outs[i], errs[i]
			if p.err != nil && retryable(p.err) && b.s.engineCtxOr().Err() == nil {
				again = append(again, p)
				continue
			}
			close(p.done)
		}
		todo = again
	}
	for _, p := range todo {
		close(p.done)
	}
}
