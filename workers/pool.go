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
//
// The pool also measures its load over time for the autoscaler (sample):
// the average number of busy slots, and the share of the time the reader
// was held back waiting for free slots. Sampling "busy" at an instant hides
// fast handlers, whose slots are idle at almost every instant even under a
// huge backlog; what happened over the interval does not.
type pool struct {
	mu       sync.Mutex
	limit    int
	reserved int
	busy     int
	// freed gets a signal whenever a slot is released or the limit grows.
	freed chan struct{}

	now      func() time.Time // the clock (tests use a fake one)
	since    time.Time        // start of the current sample
	last     time.Time        // last change of busy
	busyArea float64          // busy slots × seconds since since
	waited   time.Duration    // time the reader waited for slots since since
	waitFrom time.Time        // when the reader started waiting (zero: not waiting)
	done     int64            // jobs ended since since
}

func newPool(limit int) *pool {
	return newPoolClock(limit, time.Now)
}

func newPoolClock(limit int, now func() time.Time) *pool {
	t := now()
	return &pool{limit: limit, freed: make(chan struct{}, 1), now: now, since: t, last: t}
}

// acquire reserves between 1 and most free slots, waiting until one is
// free. With want > 1 (the stream has a backlog) it waits up to linger for
// want slots (at most half the pool) while jobs are running, so that a
// loaded step reads and writes in larger batches: each Redis call then
// carries more tokens, which is what bounds the drain rate. An idle pool
// never waits. The time it waits counts as the pool holding the reader
// back (see sample).
func (p *pool) acquire(ctx context.Context, most, want int, linger time.Duration) (int, error) {
	var deadline <-chan time.Time // the linger, once a slot is free
	waited := linger <= 0
	for {
		p.mu.Lock()
		free := p.limit - p.busy - p.reserved
		if free > 0 && (waited || p.busy == 0 || free >= min(want, most, max(1, p.limit/2))) {
			n := min(free, most)
			p.reserved += n
			p.stopWaiting()
			p.mu.Unlock()
			return n, nil
		}
		if p.waitFrom.IsZero() {
			p.waitFrom = p.now()
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
			p.mu.Lock()
			p.stopWaiting()
			p.mu.Unlock()
			return 0, ctx.Err()
		}
	}
}

// stopWaiting ends a wait of the reader (mu held).
func (p *pool) stopWaiting() {
	if !p.waitFrom.IsZero() {
		p.waited += p.now().Sub(p.waitFrom)
		p.waitFrom = time.Time{}
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
	p.mark()
	p.reserved--
	p.busy++
	p.mu.Unlock()
}

// end frees a busy slot (a job ended).
func (p *pool) end() {
	p.mu.Lock()
	p.mark()
	p.busy--
	p.done++
	p.mu.Unlock()
	p.signal()
}

// mark adds the busy slots since the last change to the sample (mu held).
func (p *pool) mark() {
	t := p.now()
	p.busyArea += float64(p.busy) * t.Sub(p.last).Seconds()
	p.last = t
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

// poolSample is what a pool measured since the previous sample.
type poolSample struct {
	Limit, Busy int
	// Elapsed is the length of the sample.
	Elapsed time.Duration
	// BusyAvg is the average number of busy slots over the sample.
	BusyAvg float64
	// WaitShare is the share of the sample (0..1) during which the reader
	// waited for free slots: the pool held it back.
	WaitShare float64
	// Done is how many jobs ended.
	Done int64
}

// sample returns the load since the previous sample and starts a new one.
func (p *pool) sample() poolSample {
	p.mu.Lock()
	defer p.mu.Unlock()
	t := p.now()
	p.mark()
	if !p.waitFrom.IsZero() {
		p.waited += t.Sub(p.waitFrom)
		p.waitFrom = t
	}
	s := poolSample{Limit: p.limit, Busy: p.busy, Elapsed: t.Sub(p.since), Done: p.done}
	if el := s.Elapsed.Seconds(); el > 0 {
		s.BusyAvg = p.busyArea / el
		s.WaitShare = min(1, p.waited.Seconds()/el)
	}
	p.since, p.busyArea, p.waited, p.done = t, 0, 0, 0
	return s
}
