package httpapi

import (
	"context"
	"sync"
)

// bodyBudget bounds the bytes of the request bodies being read at once
// (submissions and schedules, which are read whole before they are
// checked): without it, N clients each sending a 1 MiB body slowly hold
// N MiB of the server's memory (review 8: 400 slow submissions, 480 MB).
// It is not a queue: when bytes come back every waiter tries again, so a
// small body is not held behind a large one.
type bodyBudget struct {
	mu    sync.Mutex
	total int64
	free  int64
	wake  chan struct{} // closed and replaced when bytes come back
}

func newBodyBudget(total int64) *bodyBudget {
	return &bodyBudget{total: total, free: total, wake: make(chan struct{})}
}

// acquire reserves n bytes (at most the whole budget), waiting until they
// are free or ctx ends (false). The caller gives back what it got with
// release.
func (b *bodyBudget) acquire(ctx context.Context, n int64) (int64, bool) {
	n = min(n, b.total)
	for {
		b.mu.Lock()
		if b.free >= n {
			b.free -= n
			b.mu.Unlock()
			return n, true
		}
		wake := b.wake
		b.mu.Unlock()
		select {
		case <-wake:
		case <-ctx.Done():
			return 0, false
		}
	}
}

func (b *bodyBudget) release(n int64) {
	b.mu.Lock()
	b.free += n
	close(b.wake)
	b.wake = make(chan struct{})
	b.mu.Unlock()
}
