package httpapi

import (
	"bytes"
	"context"
	"errors"
	"io"
	"sync"
	"time"
)

// bodyBudget bounds the bytes of the request bodies being read at once
// (submissions and schedules, which are read whole before they are
// checked): without it, N clients each sending a 1 MiB body slowly hold
// N MiB of the server's memory (review 8: 400 slow submissions, 480 MB).
// It is not a queue: when bytes come back every waiter tries again, so a
// small body is not held behind a large one. A body reserves up to
// bodyFirstReserve before its first byte, and the rest as its bytes
// arrive (read): a slow client holds about what it sent, not what it
// announced.
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

// bodyFirstReserve is the most a body reserves before its first byte is
// read (its announced length, plus bytes.MinRead, when smaller): most
// bodies are read within that one reservation.
const bodyFirstReserve = 64 << 10

// bodyGrowWait is how long a body being read waits for more of the budget
// before it is refused: bodies read in part, each waiting for room that
// the others hold, must not wait for each other until they all time out.
const bodyGrowWait = time.Second

// errBudgetFull: the budget had no room for a body, or for the rest of it.
var errBudgetFull = errors.New("httpapi: request body budget full")

// read reads r, announced bytes long (-1: unknown, then up to limit),
// within the budget, and returns the body and the bytes it holds of the
// budget (given back with release once the body is no longer needed). On
// an error it holds nothing; errBudgetFull when there was no room. A body
// never holds more than the whole budget (acquire), so one alone is
// always read.
func (b *bodyBudget) read(ctx context.Context, r io.Reader, announced, limit int64) ([]byte, int64, error) {
	want := limit + bytes.MinRead
	if announced >= 0 {
		want = announced + bytes.MinRead
	}
	first := min(want, bodyFirstReserve)
	held, ok := b.acquire(ctx, first)
	if !ok {
		return nil, 0, errBudgetFull
	}
	buf := make([]byte, 0, first)
	for {
		if len(buf) == cap(buf) {
			grown := max(min(2*int64(cap(buf)), want), int64(cap(buf))+bytes.MinRead)
			if need := min(grown-int64(cap(buf)), b.total-held); need > 0 {
				gctx, cancel := context.WithTimeout(ctx, bodyGrowWait)
				got, ok := b.acquire(gctx, need)
				cancel()
				if !ok {
					b.release(held)
					return nil, 0, errBudgetFull
				}
				held += got
			}
			buf = append(make([]byte, 0, grown), buf...)
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		switch {
		case errors.Is(err, io.EOF):
			return buf, held, nil
		case err != nil:
			b.release(held)
			return nil, 0, err
		}
	}
}
