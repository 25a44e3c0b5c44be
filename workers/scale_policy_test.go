package workers

import (
	"fmt"
	"testing"
	"time"
)

// scaleRun drives a scaler with a fake clock, one tick per second.
type scaleRun struct {
	t   *testing.T
	s   *scaler
	now time.Time
	in  scaleInput
}

func newScaleRun(t *testing.T, quiet time.Duration, minL, maxL, limit int) *scaleRun {
	return &scaleRun{t: t, s: &scaler{QuietPeriod: quiet}, now: time.Unix(0, 0),
		in: scaleInput{Min: minL, Max: maxL, poolSample: poolSample{Limit: limit}}}
}

// tick feeds one interval's measurements and returns the new limit.
func (r *scaleRun) tick(backlog int64, busyNow int, busyAvg, waitShare float64) int {
	r.t.Helper()
	r.now = r.now.Add(time.Second)
	r.in.Now, r.in.Backlog, r.in.Busy, r.in.BusyAvg, r.in.WaitShare = r.now, backlog, busyNow, busyAvg, waitShare
	r.in.Elapsed = time.Second
	r.in.Limit = r.s.next(r.in)
	if r.in.Limit < r.in.Min || r.in.Limit > r.in.Max {
		r.t.Fatalf("limit %d outside %d..%d", r.in.Limit, r.in.Min, r.in.Max)
	}
	return r.in.Limit
}

// TestScalerGrowsForFastHandlers is the case an instant's busy count
// misses: a handler that takes microseconds leaves every slot free at the
// tick, but the reader spent the interval waiting for slots while a
// backlog sat in Redis. The pool doubles each tick up to Max.
func TestScalerGrowsForFastHandlers(t *testing.T) {
	r := newScaleRun(t, 10*time.Second, 1, 256, 1)
	var got []int
	for range 6 {
		got = append(got, r.tick(9000, 0, 0.3, 0.9))
	}
	// Held back most of the time, far behind: quadruple.
	if want := []int{4, 16, 64, 256, 256, 256}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("growth %v, want %v", got, want)
	}
	// Held back a third of the time, or close to the backlog's need: double.
	r = newScaleRun(t, 10*time.Second, 1, 256, 1)
	got = got[:0]
	for range 4 {
		got = append(got, r.tick(9000, 0, 0.3, 0.3))
	}
	got = append(got, r.tick(40, 0, 0.3, 0.9))
	if want := []int{2, 4, 8, 16, 32}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("growth %v, want %v", got, want)
	}
}

func TestScalerGrowsWhenAllBusy(t *testing.T) {
	// Slow handlers: every slot busy at the tick, with a backlog.
	r := newScaleRun(t, 10*time.Second, 2, 16, 2)
	var got []int
	for range 5 {
		got = append(got, r.tick(1000, r.in.Limit, float64(r.in.Limit), 0))
	}
	want := []int{4, 8, 16, 16, 16}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("growth %v, want %v", got, want)
		}
	}
}

func TestScalerHoldsWhenThePoolIsNotTheBound(t *testing.T) {
	r := newScaleRun(t, 10*time.Second, 1, 64, 16)
	// A backlog, but the reader was rarely held back and slots are free:
	// something else (Redis, the handler's own dependency) is the bound.
	for range 20 {
		if l := r.tick(500, 3, 4, 0.05); l != 16 {
			t.Fatalf("limit moved to %d", l)
		}
	}
	// No backlog but the pool is well used: hold.
	for range 20 {
		if l := r.tick(0, 10, 12, 0); l != 16 {
			t.Fatalf("limit moved to %d with 12 of 16 busy on average", l)
		}
	}
}

func TestScalerGrowthBoundedByBacklog(t *testing.T) {
	r := newScaleRun(t, 10*time.Second, 1, 64, 4)
	if l := r.tick(1, 4, 4, 1); l != 5 {
		t.Fatalf("grew to %d with a backlog of 1", l)
	}
}

func TestScalerShrinksWhenQuiet(t *testing.T) {
	r := newScaleRun(t, 10*time.Second, 2, 64, 32)
	// Quiet: nothing for QuietPeriod, then halve, then wait again.
	for i := range 10 {
		if l := r.tick(0, 1, 1, 0); l != 32 {
			t.Fatalf("shrank early at quiet tick %d: %d", i, l)
		}
	}
	if l := r.tick(0, 1, 1, 0); l != 16 {
		t.Fatalf("after quiet period: %d, want 16", l)
	}
	for range 9 {
		if l := r.tick(0, 1, 1, 0); l != 16 {
			t.Fatalf("shrank again too soon: %d", l)
		}
	}
	if l := r.tick(0, 1, 1, 0); l != 8 {
		t.Fatalf("second shrink: %d, want 8", l)
	}
	// Never below twice the average busy slots: 3.5 busy on average of 8
	// keeps 7.
	for range 50 {
		r.tick(0, 3, 3.5, 0)
	}
	if r.in.Limit != 7 {
		t.Fatalf("limit %d with 3.5 busy on average, want 7", r.in.Limit)
	}
	// Never below Min.
	for range 100 {
		r.tick(0, 0, 0, 0)
	}
	if r.in.Limit != 2 {
		t.Fatalf("idle limit %d, want min 2", r.in.Limit)
	}
	// A burst resets the quiet clock.
	r.in.Limit = 32
	r.tick(5, 32, 32, 1) // grows by the backlog's need: 32 -> 37
	if r.in.Limit != 37 {
		t.Fatalf("burst: limit %d, want 37", r.in.Limit)
	}
	for range 10 {
		if l := r.tick(0, 0, 0, 0); l != 37 {
			t.Fatalf("shrank within the quiet period after a burst: %d", l)
		}
	}
}
