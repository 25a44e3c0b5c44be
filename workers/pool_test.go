package workers

import (
	"context"
	"testing"
	"time"
)

func TestPoolAcquireLinger(t *testing.T) {
	ctx := context.Background()
	const linger = 50 * time.Millisecond

	// An idle pool never waits, whatever the caller wants.
	p := newPool(8)
	start := time.Now()
	if n, err := p.acquire(ctx, 8, 8, time.Hour); err != nil || n != 8 {
		t.Fatalf("idle pool: %d %v", n, err)
	}
	if d := time.Since(start); d > time.Second { // vs a linger of an hour
		t.Fatalf("idle pool waited %v", d)
	}

	// With jobs running and one free slot, a reader that wants a batch
	// waits for the linger, then takes what is free.
	p = newPool(8)
	for range 7 {
		p.reserved++
		p.begin()
	}
	start = time.Now()
	n, err := p.acquire(ctx, 8, 8, linger)
	if d := time.Since(start); err != nil || n != 1 || d < linger {
		t.Fatalf("busy pool: %d slots after %v (%v), want 1 after %v", n, d, err, linger)
	}
	p.unreserve(1)

	// Half the pool freeing up ends the wait early.
	go func() {
		time.Sleep(5 * time.Millisecond)
		for range 3 {
			p.end()
		}
	}()
	start = time.Now()
	n, err = p.acquire(ctx, 8, 8, time.Hour)
	if d := time.Since(start); err != nil || n != 4 || d > time.Second {
		t.Fatalf("half free: %d slots after %v (%v), want 4 at once", n, d, err)
	}

	// A reader that wants one slot takes it at once; a negative linger
	// never waits.
	p = newPool(8)
	for range 7 {
		p.reserved++
		p.begin()
	}
	for _, c := range []struct {
		want   int
		linger time.Duration
	}{{1, time.Hour}, {8, -1}} {
		start = time.Now()
		if n, err := p.acquire(ctx, 8, c.want, c.linger); err != nil || n != 1 || time.Since(start) > time.Second {
			t.Fatalf("want %d linger %v: %d %v after %v", c.want, c.linger, n, err, time.Since(start))
		}
		p.unreserve(1)
	}

	// A cancelled context ends the wait.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	p.reserved++ // now nothing is free
	if _, err := p.acquire(cctx, 8, 1, linger); err == nil {
		t.Fatal("acquire on a full pool with a cancelled context returned")
	}
}

// TestPoolSample: the pool measures busy slots over time and the time its
// reader waited for a slot, with a fake clock.
func TestPoolSample(t *testing.T) {
	now := time.Unix(100, 0)
	p := newPoolClock(2, func() time.Time { return now })
	ctx := context.Background()
	if n, err := p.acquire(ctx, 8, 1, 0); err != nil || n != 2 {
		t.Fatalf("acquire: %d %v", n, err)
	}
	p.begin()
	p.begin()
	now = now.Add(time.Second) // 2 busy for 1s
	// The pool is full: a reader now waits for a slot for 1s.
	got := make(chan int)
	go func() {
		n, _ := p.acquire(ctx, 8, 1, 0)
		got <- n
	}()
	for {
		p.mu.Lock()
		waiting := !p.waitFrom.IsZero()
		if waiting {
			now = now.Add(time.Second) // 2 busy for 1s more
		}
		p.mu.Unlock()
		if waiting {
			break
		}
		time.Sleep(time.Millisecond)
	}
	p.end()
	if n := <-got; n != 1 {
		t.Fatalf("reader got %d slots, want 1", n)
	}
	s := p.sample()
	if s.Elapsed != 2*time.Second || s.Done != 1 || s.Busy != 1 || s.Limit != 2 {
		t.Fatalf("sample %+v", s)
	}
	if s.BusyAvg != 2 {
		t.Fatalf("busy average %v, want 2", s.BusyAvg)
	}
	if s.WaitShare != 0.5 {
		t.Fatalf("wait share %v, want 0.5", s.WaitShare)
	}
	// The next sample starts from zero: 1 busy for 1s, nobody waiting.
	now = now.Add(time.Second)
	if s := p.sample(); s.BusyAvg != 1 || s.WaitShare != 0 || s.Done != 0 || s.Elapsed != time.Second {
		t.Fatalf("second sample %+v", s)
	}
}
