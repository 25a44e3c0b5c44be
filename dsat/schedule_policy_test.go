package dsat

import (
	"strings"
	"testing"
	"time"
)

func utc(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t
}

// slots lists n slots of tm after start, as RFC 3339 UTC.
func slots(tm timing, start time.Time, n int) string {
	var out []string
	for t := start; len(out) < n; {
		if t = tm.after(t); t.IsZero() {
			break
		}
		out = append(out, t.UTC().Format("01-02T15:04Z"))
	}
	return strings.Join(out, " ")
}

func mustCron(t *testing.T, expr, zone string) timing {
	t.Helper()
	tm, err := compileCron(expr, zone)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

func TestEverySlotsAreEpochAligned(t *testing.T) {
	t.Parallel()
	tm := everyTiming(5 * time.Minute)
	if got := slots(tm, utc("2026-01-02T10:03:17Z"), 3); got != "01-02T10:05Z 01-02T10:10Z 01-02T10:15Z" {
		t.Fatalf("every 5m: %s", got)
	}
	// A slot is strictly after: from a slot, the next one.
	if got := tm.after(utc("2026-01-02T10:05:00Z")); !got.Equal(utc("2026-01-02T10:10:00Z")) {
		t.Fatalf("after a slot: %s", got)
	}
	sec := everyTiming(1500 * time.Millisecond)
	if got := sec.after(time.UnixMilli(3000)); got.UnixMilli() != 4500 {
		t.Fatalf("every 1.5s after 3s: %d", got.UnixMilli())
	}
}

// TestCronAcrossDST: Europe/Paris goes to summer time on 2026-03-29 (02:00
// CET -> 03:00 CEST, 01:00 UTC) and back on 2026-10-25 (03:00 CEST ->
// 02:00 CET, 01:00 UTC).
func TestCronAcrossDST(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		expr, from, want string
	}{
		// Hourly: one slot per real hour, across both changes.
		{"0 * * * *", "2026-03-28T23:30:00Z", "03-29T00:00Z 03-29T01:00Z 03-29T02:00Z 03-29T03:00Z"},
		{"0 * * * *", "2026-10-24T23:30:00Z", "10-25T00:00Z 10-25T01:00Z 10-25T02:00Z 10-25T03:00Z"},
		// Daily at 02:30 local: on the 29th of March 02:30 does not exist and
		// the slot comes at 03:30 CEST (01:30 UTC); the next day 02:30 CEST.
		{"30 2 * * *", "2026-03-28T12:00:00Z", "03-29T01:30Z 03-30T00:30Z 03-31T00:30Z"},
		// On the 25th of October 02:30 happens twice: one slot, the first
		// (02:30 CEST = 00:30 UTC), then 02:30 CET the days after.
		{"30 2 * * *", "2026-10-24T12:00:00Z", "10-25T00:30Z 10-26T01:30Z 10-27T01:30Z"},
		// Daily at 09:00 local: 08:00 UTC in winter, 07:00 UTC in summer.
		{"0 9 * * *", "2026-03-28T12:00:00Z", "03-29T07:00Z 03-30T07:00Z"},
		{"@daily", "2026-10-24T12:00:00Z", "10-24T22:00Z 10-25T23:00Z"},
	} {
		if got := slots(mustCron(t, tc.expr, "Europe/Paris"), utc(tc.from), strings.Count(tc.want, " ")+1); got != tc.want {
			t.Errorf("%s from %s: got %s, want %s", tc.expr, tc.from, got, tc.want)
		}
	}
	// From inside the repeated hour's second pass (02:10 CET), 02:30 has
	// already run: the next slot is the next day's.
	if got := slots(mustCron(t, "30 2 * * *", "Europe/Paris"), utc("2026-10-25T01:10:00Z"), 1); got != "10-26T01:30Z" {
		t.Errorf("from the second 02:10: %s", got)
	}
	if got := slots(mustCron(t, "*/5 * * * *", "UTC"), utc("2026-01-02T10:03:00Z"), 2); got != "01-02T10:05Z 01-02T10:10Z" {
		t.Errorf("*/5 UTC: %s", got)
	}
}

func TestCronRefused(t *testing.T) {
	t.Parallel()
	for expr, want := range map[string]string{
		"* * *":                          "not a cron expression",
		"@every 1m":                      "use the every field",
		"CRON_TZ=Europe/Paris 0 * * * *": "give the zone in timezone",
		"0 0 30 2 *":                     "never fires",
		"0 0 * * * *":                    "not a cron expression", // seconds are not a field
	} {
		if _, err := compileCron(expr, "UTC"); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", expr, err, want)
		}
	}
}

func TestJitterIsFixedPerSlot(t *testing.T) {
	t.Parallel()
	slot := utc("2026-01-02T10:00:00Z")
	a, b := jitter("s1", slot, 10*time.Second), jitter("s1", slot, 10*time.Second)
	if a != b || a < 0 || a >= 10*time.Second {
		t.Fatalf("jitter %s then %s", a, b)
	}
	spread := map[time.Duration]bool{}
	for i := 0; i < 50; i++ {
		spread[jitter("s1", slot.Add(time.Duration(i)*time.Minute), 10*time.Second)] = true
	}
	if len(spread) < 20 || jitter("s1", slot, 0) != 0 {
		t.Fatalf("jitter takes %d values over 50 slots", len(spread))
	}
}

// TestPlanCatchup: which due slots a firing submits, by policy, for a
// schedule of every 1m whose next slot is 10:00.
func TestPlanCatchup(t *testing.T) {
	t.Parallel()
	tm := everyTiming(time.Minute)
	next := utc("2026-01-02T10:00:00Z")
	none := func(time.Time) time.Duration { return 0 }
	fmtSlots := func(f firing) string {
		var s []string
		for _, x := range f.Fire {
			s = append(s, x.Format("15:04"))
		}
		return strings.Join(s, ",") + " next " + f.Next.Format("15:04")
	}
	for _, tc := range []struct {
		catchup, now, want string
		skipped            int
	}{
		{CatchupOne, "09:59:59", " next 10:00", 0},          // not due
		{CatchupOne, "10:00:00", "10:00 next 10:01", 0},     // on time
		{CatchupAll, "10:00:00.300", "10:00 next 10:01", 0}, // on time
		{CatchupNone, "10:00:30", "10:00 next 10:01", 0},    // late, under a minute
		{CatchupOne, "10:03:30", "10:03 next 10:04", 3},     // the latest only
		{CatchupAll, "10:03:30", "10:00,10:01,10:02,10:03 next 10:04", 0},
		{CatchupNone, "10:03:30", "10:03 next 10:04", 3}, // the current slot is on time
		{CatchupNone, "10:03:00", "10:03 next 10:04", 3},
		{CatchupNone, "10:01:00", "10:01 next 10:02", 1},
	} {
		now := utc("2026-01-02T" + tc.now + "Z")
		f := plan(tm, tc.catchup, none, next, now)
		if got := fmtSlots(f); got != tc.want || f.Skipped != tc.skipped {
			t.Errorf("%s at %s: %q skipped %d, want %q skipped %d", tc.catchup, tc.now, got, f.Skipped, tc.want, tc.skipped)
		}
	}
	// "none" on an hourly cron whose slot is two minutes late: missed.
	hourly := mustCron(t, "0 * * * *", "UTC")
	f := plan(hourly, CatchupNone, none, next, utc("2026-01-02T10:02:00Z"))
	if len(f.Fire) != 0 || f.Skipped != 1 || !f.Next.Equal(utc("2026-01-02T11:00:00Z")) {
		t.Errorf("none, 2 min late: %+v", f)
	}
	if f := plan(hourly, CatchupOne, none, next, utc("2026-01-02T10:02:00Z")); len(f.Fire) != 1 {
		t.Errorf("one, 2 min late: %+v", f)
	}
}

// TestPlanFarBehind: a day behind on every 1s, "all" submits the most
// recent MaxCatchup slots and counts the rest as skipped, without walking
// 86,400 slots.
func TestPlanFarBehind(t *testing.T) {
	t.Parallel()
	next := utc("2026-01-02T00:00:00Z")
	now := next.Add(24*time.Hour - 1)
	f := plan(everyTiming(time.Second), CatchupAll, func(time.Time) time.Duration { return 0 }, next, now)
	if len(f.Fire) != MaxCatchup || f.Skipped != 86400-MaxCatchup || !f.Fire[MaxCatchup-1].Equal(next.Add(86399*time.Second)) ||
		!f.Next.Equal(next.Add(24*time.Hour)) {
		t.Fatalf("fire %d (last %s), skipped %d, next %s", len(f.Fire), f.Fire[len(f.Fire)-1], f.Skipped, f.Next)
	}
	// A cron a week behind: every slot counted once.
	f = plan(mustCron(t, "* * * * *", "UTC"), CatchupOne, func(time.Time) time.Duration { return 0 }, next, next.Add(7*24*time.Hour))
	if len(f.Fire) != 1 || f.Skipped != 7*24*60 {
		t.Fatalf("cron a week behind: fire %d skipped %d", len(f.Fire), f.Skipped)
	}
}

// TestPlanJitter: a slot is due at slot + its jitter.
func TestPlanJitter(t *testing.T) {
	t.Parallel()
	next := utc("2026-01-02T10:00:00Z")
	jit := func(time.Time) time.Duration { return 20 * time.Second }
	if f := plan(everyTiming(time.Minute), CatchupOne, jit, next, next.Add(19*time.Second)); len(f.Fire) != 0 {
		t.Fatalf("fired before its jitter: %+v", f)
	}
	if f := plan(everyTiming(time.Minute), CatchupOne, jit, next, next.Add(20*time.Second)); len(f.Fire) != 1 || !f.Fire[0].Equal(next) {
		t.Fatalf("not fired at slot + jitter: %+v", f)
	}
}

func TestNormalize(t *testing.T) {
	t.Parallel()
	ok, ps := ScheduleSpec{ID: "s", Pipeline: "p", Every: "90s", Payload: []byte(" { \"a\" : 1 } "), Jitter: "1500ms"}.Normalize(0)
	if len(ps) != 0 || ok.Every != "1m30s" || string(ok.Payload) != `{"a":1}` || ok.Catchup != CatchupOne || ok.Jitter != "1.5s" {
		t.Fatalf("%+v %v", ok, ps)
	}
	c, ps := ScheduleSpec{ID: "s", Pipeline: "p", Cron: " 0  9 * * 1-5 "}.Normalize(0)
	if len(ps) != 0 || c.Cron != "0 9 * * 1-5" || c.Timezone != "UTC" || string(c.Payload) != "{}" {
		t.Fatalf("%+v %v", c, ps)
	}
	for _, tc := range []struct {
		s     ScheduleSpec
		field string
		want  string
	}{
		{ScheduleSpec{ID: "Bad!", Pipeline: "p", Every: "1s"}, "id", "must be 1 to 64"},
		{ScheduleSpec{ID: "s", Pipeline: "p"}, "every", "is required"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Every: "1s", Cron: "* * * * *"}, "every", "not both"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Every: "500ms"}, "every", "must be from 1s"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Every: "soon"}, "every", "not a Go duration"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Every: "1m", Timezone: "UTC"}, "timezone", "applies to cron only"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Cron: "* * * * *", Timezone: "Mars/Olympus"}, "timezone", "not a known IANA time zone"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Every: "1m", Catchup: "some"}, "catchup", "use none, one or all"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Every: "1m", Jitter: "1m"}, "jitter", "shorter than every"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Cron: "@hourly", Jitter: "2h"}, "jitter", "from 0 to 1h"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Every: "1m", Payload: []byte("{")}, "payload", "not valid JSON"},
		{ScheduleSpec{ID: "s", Pipeline: "p", Every: "1m", Payload: []byte(`"` + strings.Repeat("x", 100) + `"`)}, "payload", "larger than the limit of 64"},
	} {
		_, ps := tc.s.Normalize(64)
		if len(ps) != 1 || ps[0].Field != tc.field || !strings.Contains(ps[0].Msg, tc.want) {
			t.Errorf("%+v: %v, want %s: %s", tc.s, ps, tc.field, tc.want)
		}
	}
	// With the default payload limit (1 MiB), a schedule's is 64 KiB.
	payload := func(n int) []byte { return []byte(`"` + strings.Repeat("x", n-2) + `"`) }
	if _, ps := (ScheduleSpec{ID: "s", Pipeline: "p", Every: "1m", Payload: payload(MaxSchedulePayload)}).Normalize(0); len(ps) != 0 {
		t.Errorf("a payload of %d bytes: %v", MaxSchedulePayload, ps)
	}
	_, ps = ScheduleSpec{ID: "s", Pipeline: "p", Every: "1m", Payload: payload(MaxSchedulePayload + 1)}.Normalize(0)
	if len(ps) != 1 || ps[0].Field != "payload" || !strings.Contains(ps[0].Msg, "larger than the limit of 65536") {
		t.Errorf("a payload of %d bytes: %v", MaxSchedulePayload+1, ps)
	}
}
