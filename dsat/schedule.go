package dsat

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"
	_ "time/tzdata" // schedules' time zones also where the machine has no zoneinfo

	"github.com/robfig/cron/v3"
)

// Limits and defaults of schedules (README, "Schedules").
const (
	// MaxSchedules is how many schedules may exist at once.
	MaxSchedules = 1000
	// MaxSchedulePayload bounds a schedule's payload (below a smaller
	// payload limit of the process): 1000 schedules then hold at most
	// 64 MiB of payloads in Redis, and a list of them as much in memory.
	MaxSchedulePayload = 64 << 10
	// MinEvery and MaxEvery bound an "every" interval.
	MinEvery = time.Second
	MaxEvery = 366 * 24 * time.Hour
	// MaxJitter bounds a schedule's jitter.
	MaxJitter = time.Hour
	// MaxCatchup is the most slots one firing of a catch-up "all" schedule
	// submits: the most recent ones; older missed slots are skipped.
	MaxCatchup = 100
	// MissedAfter is how late a slot may run under catch-up "none": a
	// slot later than this counts as missed.
	MissedAfter = time.Minute
	// ScheduleLease is how long a process that claimed a firing has to
	// submit its tasks; past it, another process fires the claimed slots
	// again (with the same idempotency keys, so still one task per slot).
	ScheduleLease = 5 * time.Second
)

// Catch-up policies: what a firing does with slots that came due while no
// process fired the schedule.
const (
	CatchupNone = "none" // only the latest slot, and only if under MissedAfter late
	CatchupOne  = "one"  // only the latest slot (the default)
	CatchupAll  = "all"  // every missed slot, at most MaxCatchup per firing
)

// ScheduleSpec is a schedule's definition as a user writes it (HTTP API,
// CLI, a pipeline file's schedules: section). Every or Cron says when its
// slots are; at each slot one task of Pipeline is submitted with Payload.
type ScheduleSpec struct {
	// ID names the schedule: 1 to 64 characters of a-z, 0-9, '_' or '-'.
	ID string `json:"id"`
	// Pipeline is the pipeline a slot's task runs (its newest version).
	Pipeline string `json:"pipeline"`
	// Every is a Go duration from 1s to 366 days: the slots are the
	// multiples of it since the Unix epoch (every: 5m fires at :00, :05…).
	Every string `json:"every,omitempty"`
	// Cron is a five-field cron expression (minute hour day month weekday)
	// or a descriptor (@hourly, @daily, @weekly, @monthly, @yearly), read
	// in Timezone.
	Cron string `json:"cron,omitempty"`
	// Timezone is an IANA zone name (Europe/Paris) for Cron; default UTC.
	Timezone string `json:"timezone,omitempty"`
	// Payload is each task's input (JSON); default {}.
	Payload json.RawMessage `json:"payload"`
	// Paused stops the firings; resuming starts at the next slot.
	Paused bool `json:"paused"`
	// Catchup is "none", "one" (default) or "all".
	Catchup string `json:"catchup"`
	// Jitter delays each slot's task by a fixed pseudo-random part of it
	// (the same in every process), up to an hour; "" for none.
	Jitter string `json:"jitter,omitempty"`
	// Line is where a pipeline file declares the schedule (0: not from a
	// file).
	Line int `json:"-"`
}

// FieldProblem is one thing wrong with a schedule definition.
type FieldProblem struct {
	Field, Msg string
}

// Normalize checks a definition and returns it in the stored form: every
// default filled in, durations in Go's canonical form, the payload
// compacted. maxPayload bounds the payload (0: DefaultMaxPayload), and
// MaxSchedulePayload below it. It does
// not check that the pipeline is loaded (Client.PutSchedule does).
func (s ScheduleSpec) Normalize(maxPayload int) (ScheduleSpec, []FieldProblem) {
	var ps []FieldProblem
	bad := func(field, format string, a ...any) { ps = append(ps, FieldProblem{field, fmt.Sprintf(format, a...)}) }
	if !ValidName(s.ID) {
		bad("id", "%q must be 1 to %d characters of a-z, 0-9, '_' or '-'", trimText(s.ID), MaxNameLen)
	}
	if !ValidName(s.Pipeline) {
		bad("pipeline", "%q must name a loaded pipeline (1 to %d characters of a-z, 0-9, '_' or '-')", trimText(s.Pipeline), MaxNameLen)
	}
	if maxPayload <= 0 {
		maxPayload = DefaultMaxPayload
	}
	maxPayload = min(maxPayload, MaxSchedulePayload)
	s.Payload = bytes.TrimSpace(s.Payload)
	switch {
	case len(s.Payload) == 0 || string(s.Payload) == "null":
		s.Payload = json.RawMessage("{}")
	case !json.Valid(s.Payload):
		bad("payload", "is not valid JSON")
	default:
		var b bytes.Buffer
		_ = json.Compact(&b, s.Payload)
		if b.Len() > maxPayload {
			bad("payload", "%d bytes is larger than the limit of %d", b.Len(), maxPayload)
		}
		s.Payload = b.Bytes()
	}
	if s.Catchup == "" {
		s.Catchup = CatchupOne
	}
	if s.Catchup != CatchupNone && s.Catchup != CatchupOne && s.Catchup != CatchupAll {
		bad("catchup", "%q: use none, one or all", trimText(s.Catchup))
	}
	var every time.Duration
	switch {
	case s.Every != "" && s.Cron != "":
		bad("every", "give either every or cron, not both")
	case s.Every != "":
		every = s.normalizeEvery(bad)
	case s.Cron != "":
		s.normalizeCron(bad)
	default:
		bad("every", "is required: give every (a Go duration such as 30s or 1h) or cron (such as \"*/5 * * * *\")")
	}
	s.normalizeJitter(every, bad)
	return s, ps
}

// normalizeEvery checks and canonicalizes Every and returns it.
func (s *ScheduleSpec) normalizeEvery(bad func(field, format string, a ...any)) time.Duration {
	d, err := time.ParseDuration(s.Every)
	switch {
	case err != nil:
		bad("every", "%q is not a Go duration such as 30s, 5m or 1h", trimText(s.Every))
	case d < MinEvery || d > MaxEvery:
		bad("every", "%s must be from 1s to 8784h (366 days)", d)
	case d%time.Millisecond != 0:
		bad("every", "%s must be a whole number of milliseconds", d)
	default:
		s.Every = d.String()
	}
	if s.Timezone != "" {
		bad("timezone", "applies to cron only: every's slots are multiples of the interval since the Unix epoch")
	}
	return d
}

// normalizeCron checks Cron and Timezone (default UTC).
func (s *ScheduleSpec) normalizeCron(bad func(field, format string, a ...any)) {
	s.Cron = strings.Join(strings.Fields(s.Cron), " ")
	if s.Timezone == "" {
		s.Timezone = "UTC"
	}
	if _, err := loadZone(s.Timezone); err != nil {
		bad("timezone", "%q is not a known IANA time zone (such as UTC or Europe/Paris)", trimText(s.Timezone))
		return
	}
	if _, err := compileCron(s.Cron, s.Timezone); err != nil {
		bad("cron", "%v", err)
	}
}

func (s *ScheduleSpec) normalizeJitter(every time.Duration, bad func(field, format string, a ...any)) {
	if s.Jitter == "" {
		return
	}
	j, err := time.ParseDuration(s.Jitter)
	switch {
	case err != nil:
		bad("jitter", "%q is not a Go duration such as 500ms or 10s", trimText(s.Jitter))
	case j < 0 || j > MaxJitter:
		bad("jitter", "%s must be from 0 to 1h", j)
	case every > 0 && j >= every:
		bad("jitter", "%s must be shorter than every (%s)", j, every)
	case j == 0:
		s.Jitter = ""
	default:
		s.Jitter = j.Truncate(time.Millisecond).String()
	}
}

// sameTiming says two normalized definitions have the same slots.
func (s ScheduleSpec) sameTiming(o ScheduleSpec) bool {
	return s.Every == o.Every && s.Cron == o.Cron && s.Timezone == o.Timezone
}

func trimText(v string) string {
	if len(v) > 60 {
		return v[:60] + "..."
	}
	return v
}

// cronParser reads the five standard fields and the descriptors.
var cronParser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// compileCron parses a cron expression for a time zone.
func compileCron(expr, zone string) (timing, error) {
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("%q: give the zone in timezone, not in the expression", trimText(expr))
	}
	if strings.HasPrefix(expr, "@every") {
		return nil, fmt.Errorf("%q: use the every field for a fixed interval", trimText(expr))
	}
	loc, err := loadZone(zone)
	if err != nil {
		return nil, err
	}
	sched, err := cronParser.Parse(expr)
	if err != nil {
		return nil, fmt.Errorf("%q is not a cron expression (minute hour day month weekday, e.g. \"*/5 * * * *\", or @hourly, @daily…): %v", trimText(expr), err)
	}
	spec := sched.(*cron.SpecSchedule)
	t := cronTiming{spec: spec, loc: loc, wall: spec.Hour&starBit == 0}
	if t.wall {
		spec.Location = time.UTC // evaluated on the wall clock, see cronTiming
	} else {
		spec.Location = loc
	}
	if t.after(time.Now()).IsZero() {
		return nil, fmt.Errorf("%q never fires", trimText(expr))
	}
	return t, nil
}

// starBit is robfig/cron's mark of a field written as "*".
const starBit = 1 << 63

// zones caches time zones (time.LoadLocation reads a file each call).
var zones sync.Map

func loadZone(name string) (*time.Location, error) {
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	if name == "" || name == "Local" {
		return nil, fmt.Errorf("dsat: time zone %q: name an IANA zone", name)
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, l)
	return l, nil
}

// timingOf compiles a normalized definition's slots.
func timingOf(s ScheduleSpec) (timing, error) {
	if s.Cron != "" {
		return compileCron(s.Cron, s.Timezone)
	}
	d, err := time.ParseDuration(s.Every)
	if err != nil || d < MinEvery {
		return nil, fmt.Errorf("dsat: schedule %s: bad every %q", s.ID, s.Every)
	}
	return everyTiming(d), nil
}

// jitterOf is the schedule's jitter as a duration (0 for none).
func (s ScheduleSpec) jitterOf() time.Duration {
	j, _ := time.ParseDuration(s.Jitter)
	return j
}
