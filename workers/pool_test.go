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
	if d := time.Since(start); d > 20*time.Millisecond {
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
		if n, err := p.acquire(ctx, 8, c.want, c.linger); err != nil || n != 1 || time.Since(start) > 20*time.Millisecond {
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
