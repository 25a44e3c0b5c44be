package workers

import (
	"context"
	"sync"
	"time"
)

// pool bounds how many tokens of one step run at once on this satellite.
// The limit moves between the step's concurrency min and max (autoscale);
// busy counts slots held by running jobs. A reader reserves slots before it
// reads, so a satellite never holds more tokens than it can run, and tokens
// it cannot run stay in the stream for other satellites. Slots reserved by a
// reader waiting for tokens are not busy.
type pool struct {
	mu       sync.Mutex
	limit    int
	reserved int
	busy     int
	// freed gets a signal whenever a slot is released or the limit grows.
	freed chan struct{}
}

func newPool(limit int) *pool {
	return &pool{limit: limit, freed: make(chan struct{}, 1)}
}

// acquire reserves between 1 and most free slots, waiting until one is
// free. With want > 1 (the stream has a backlog) it waits up to linger for
// want slots (at most half the pool) while jobs are running, so that a
// loaded step reads and writes in larger batches: each Redis call then
// carries more tokens, which is what bounds the drain rate. An idle pool
// never waits.
func (p *pool) acquire(ctx context.Context, most, want int, linger time.Duration) (int, error) {
	var deadline <-chan time.Time // the linger, once a slot is free
	waited := linger <= 0
	for {
		p.mu.Lock()
		free := p.limit - p.busy - p.reserved
		if free > 0 && (waited || p.busy == 0 || free >= min(want, most, max(1, p.limit/2))) {
			n := min(free, most)
			p.reserved += n
			p.mu.Unlock()
			return n, nil
		}
		p.mu.Unlock()
		if free > 0 && deadline == nil {
			t := time.NewTimer(linger)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-p.freed:
		case <-deadline:
			waited, deadline = true, nil
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

func (p *pool) unreserve(n int) {
	if n <= 0 {
		return
	}
	p.mu.Lock()
	p.reserved -= n
	p.mu.Unlock()
	p.signal()
}

// begin turns one reserved slot into a busy one (a job starts).
func (p *pool) begin() {
	p.mu.Lock()
	p.reserved--
	p.busy++
	p.mu.Unlock()
}

// end frees a busy slot (a job ended).
func (p *pool) end() {
	p.mu.Lock()
	p.busy--
	p.mu.Unlock()
	p.signal()
}

func (p *pool) signal() {
	select {
	case p.freed <- struct{}{}:
	default:
	}
}

// setLimit changes the concurrency limit. Running jobs above a lowered
// limit finish; no new ones start until busy is under the limit.
func (p *pool) setLimit(n int) {
	p.mu.Lock()
	grew := n > p.limit
	p.limit = n
	p.mu.Unlock()
	if grew {
		p.signal()
	}
}

// load returns the current limit and busy slots.
func (p *pool) load() (limit, busy int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.limit, p.busy
}
