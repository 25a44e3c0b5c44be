package workers

import (
	"testing"
	"time"
)

func TestScalerGrowsUnderBacklogAndShrinksWhenQuiet(t *testing.T) {
	s := &scaler{QuietPeriod: 10 * time.Second}
	now := time.Unix(0, 0)
	in := scaleInput{Now: now, Min: 2, Max: 16, Limit: 2}
	tick := func(backlog int64, busy int) int {
		now = now.Add(time.Second)
		in.Now, in.Backlog, in.Busy = now, backlog, busy
		in.Limit = s.next(in)
		if in.Limit < in.Min || in.Limit > in.Max {
			t.Fatalf("limit %d outside %d..%d", in.Limit, in.Min, in.Max)
		}
		return in.Limit
	}
	// All busy with a backlog: grow each tick, never past Max.
	var got []int
	for i := 0; i < 8; i++ {
		got = append(got, tick(1000, in.Limit))
	}
	want := []int{3, 4, 6, 9, 13, 16, 16, 16}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("growth %v, want %v", got, want)
		}
	}
	// Backlog but idle slots: hold.
	if l := tick(50, 10); l != 16 {
		t.Fatalf("held limit %d", l)
	}
	// Growth is bounded by the backlog.
	in.Limit = 4
	if l := tick(1, 4); l != 5 {
		t.Fatalf("grew to %d with a backlog of 1", l)
	}
	in.Limit = 16
	// Quiet: nothing for QuietPeriod, then halve, then wait again.
	for i := 0; i < 10; i++ {
		if l := tick(0, 1); l != 16 {
			t.Fatalf("shrank early at quiet tick %d: %d", i, l)
		}
	}
	if l := tick(0, 1); l != 8 {
		t.Fatalf("after quiet period: %d, want 8", l)
	}
	for i := 0; i < 9; i++ {
		if l := tick(0, 1); l != 8 {
			t.Fatalf("shrank again too soon: %d", l)
		}
	}
	if l := tick(0, 1); l != 4 {
		t.Fatalf("second shrink: %d, want 4", l)
	}
	// Never below Min, and never below what is busy.
	for i := 0; i < 50; i++ {
		tick(0, 3)
	}
	if in.Limit != 3 {
		t.Fatalf("limit %d with 3 busy, min 2", in.Limit)
	}
	for i := 0; i < 50; i++ {
		tick(0, 0)
	}
	if in.Limit != 2 {
		t.Fatalf("idle limit %d, want min 2", in.Limit)
	}
	// A burst of work resets the quiet clock.
	tick(0, 0)
	tick(5, 2)
	for i := 0; i < 9; i++ {
		tick(0, 0)
	}
	if in.Limit < 2 {
		t.Fatal("below min")
	}
}
