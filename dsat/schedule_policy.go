package dsat

import (
	"hash/fnv"
	"strconv"
	"time"

	"github.com/robfig/cron/v3"
)

// This file is a schedule's policy, pure Go on a given clock: where its
// slots are (every, cron in a time zone), the jitter of a slot, and which
// due slots a firing submits (catch-up). The firing itself, in Redis, is
// in schedule_fire.go.

// timing gives a schedule's slots.
type timing interface {
	// after returns the first slot strictly after t, or the zero time when
	// there is none.
	after(t time.Time) time.Time
}

// everyTiming: the slots are the multiples of the interval since the Unix
// epoch, so every process finds the same slots with no shared anchor.
type everyTiming time.Duration

func (e everyTiming) after(t time.Time) time.Time {
	d := time.Duration(e).Milliseconds()
	ms := t.UnixMilli()
	slot := (ms/d + 1) * d
	if ms < 0 && ms%d != 0 {
		slot -= d
	}
	return time.UnixMilli(slot).UTC()
}

// cronTiming: a cron expression in a time zone. With "*" in the hour
// field (hourly or more often) the expression is read on real time: across
// a change of the clocks each real hour gets its slots. With fixed hours
// (a daily 02:30) it is read on the wall clock, so each local time fires
// once: a local time that the clocks skip (02:30 when they go forward)
// fires at the same instant as that time in the old offset (03:30 new
// time), and one that they repeat (when they go back) fires at its first
// occurrence only.
type cronTiming struct {
	spec *cron.SpecSchedule
	loc  *time.Location
	wall bool
}

func (c cronTiming) after(t time.Time) time.Time {
	if !c.wall {
		return c.spec.Next(t)
	}
	lt := t.In(c.loc)
	w := time.Date(lt.Year(), lt.Month(), lt.Day(), lt.Hour(), lt.Minute(), lt.Second(), lt.Nanosecond(), time.UTC)
	// Wall times that map to instants not after t (the repeated hour, seen
	// from its second pass) are passed over: a day at most.
	for i := 0; i < 24*60+1; i++ {
		if w = c.spec.Next(w); w.IsZero() {
			return w
		}
		if r := c.real(w); r.After(t) {
			return r
		}
	}
	return time.Time{}
}

// real maps a wall time (its fields, read in UTC) to an instant in the
// zone: time.Date moves a skipped time forward by the gap, and of a
// repeated time it takes the second occurrence, so the first is looked for.
func (c cronTiming) real(w time.Time) time.Time {
	r := time.Date(w.Year(), w.Month(), w.Day(), w.Hour(), w.Minute(), w.Second(), 0, c.loc)
	_, now := r.Zone()
	_, before := r.Add(-3 * time.Hour).Zone()
	if d := time.Duration(before-now) * time.Second; d > 0 {
		if e := r.Add(-d); e.Hour() == r.Hour() && e.Minute() == r.Minute() && e.Day() == r.Day() {
			return e
		}
	}
	return r
}

// jitter is a slot's delay: a fixed pseudo-random part of max derived from
// the schedule id and the slot, so every process computes the same one.
func jitter(id string, slot time.Time, max time.Duration) time.Duration {
	m := max.Milliseconds()
	if m <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(id + "@" + strconv.FormatInt(slot.UnixMilli(), 10)))
	return time.Duration(h.Sum64()%uint64(m)) * time.Millisecond
}

// firing is what one firing of a schedule does.
type firing struct {
	// Fire lists the slots to submit a task for, oldest first.
	Fire []time.Time
	// Next is the first slot not due yet (zero: the schedule has no more).
	Next time.Time
	// Skipped counts the due slots the catch-up policy passed over.
	Skipped int
}

// maxScan bounds the slots one plan walks through (a minutely cron a
// year and more behind); past it the schedule resumes at its next slot.
const maxScan = 1_000_000

// plan decides a firing at now of a schedule whose first unfired slot is
// next: the due slots are those from next whose run time (slot + jitter)
// has come. "all" fires the most recent MaxCatchup of them, "one" the
// latest, "none" the latest if it is less than MissedAfter late; the rest
// are skipped. In steady running a firing finds one due slot, and every
// policy fires it.
func plan(tm timing, catchup string, jit func(time.Time) time.Duration, next, now time.Time) firing {
	var f firing
	keep := 1
	if catchup == CatchupAll {
		keep = MaxCatchup
	}
	due, n := make([]time.Time, 0, keep), 0
	s := next
	if e, ok := tm.(everyTiming); ok && !s.IsZero() {
		// Far behind: jump over the slots that would be skipped anyway
		// (each is due: its jitter is shorter than the interval).
		d := time.Duration(e)
		if behind := int(now.Sub(s) / d); behind > keep+2 {
			s, n = s.Add(time.Duration(behind-keep-2)*d), behind-keep-2
		}
	}
	for ; !s.IsZero() && !s.Add(jit(s)).After(now); s = tm.after(s) {
		if n++; n > maxScan {
			return firing{Next: tm.after(now), Skipped: n}
		}
		if len(due) == keep {
			due = append(due[:0], due[1:]...)
		}
		due = append(due, s)
	}
	f.Next = s
	if len(due) > 0 && catchup == CatchupNone {
		if last := due[len(due)-1]; now.Sub(last.Add(jit(last))) >= MissedAfter {
			due = due[:0]
		}
	}
	f.Fire, f.Skipped = due, n-len(due)
	return f
}

// fnv32a is the hash Submit uses to pick an idempotency key's partition.
func fnv32a(s string) uint32 {
	h := fnv.New32a()
	h.Write([]byte(s))
	return h.Sum32()
}
