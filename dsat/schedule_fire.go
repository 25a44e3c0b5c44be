package dsat

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// A firing of a schedule, by any process (docs/design.md, "Schedules"):
//
//  1. read the due set: the schedules whose next slot's run time (or whose
//     claimed firing's lease end) has come — one ZRANGEBYSCORE, the whole
//     cost of a firing when nothing is due;
//  2. read the schedule and decide, on this process's clock, which due
//     slots to fire (plan, the catch-up policy) and the next slot;
//  3. claim them: schedule_claim.lua moves the schedule past them only if
//     nothing changed it since step 2 (compare-and-set), so of processes
//     firing at once one wins, and a slow process that read long ago
//     changes nothing;
//  4. submit each slot's task with the idempotency key SlotKey(id, slot):
//     a process that takes over a claim whose holder died submits the same
//     keys, so a slot still makes one task;
//  5. record the outcome (schedule_done.lua), which ends the claim.

// maxDuePerFiring bounds the schedules one FireSchedules call handles:
// all of them, so that due schedules of pipelines this process has not
// loaded cannot hold back the others.
const maxDuePerFiring = MaxSchedules

// ScheduleFiring is what one firing of one schedule did.
type ScheduleFiring struct {
	Schedule string
	// Slots were submitted, oldest first, as Tasks (same order).
	Slots []time.Time
	Tasks []string
	// Skipped counts the slots the catch-up policy passed over.
	Skipped int
	// Err is why the firing stopped before every slot had its task: a
	// temporary error leaves the claim to be taken over after
	// ScheduleLease; another is recorded as the schedule's last_error.
	Err error
}

// FireSchedules fires every schedule due now and returns the firings this
// call made (a schedule fired by another process at the same moment is not
// among them). Any number of processes may call it at any time: each slot
// makes one task. Schedules of pipelines this client has not loaded are
// left to processes that have.
func (c *Client) FireSchedules(ctx context.Context) ([]ScheduleFiring, error) {
	ids, err := c.rdb.ZRangeByScore(ctx, c.keys.SchedulesDue(), &redis.ZRangeBy{
		Min: "-inf", Max: ms(c.cfg.Now()), Count: maxDuePerFiring}).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: due schedules: %w", err)
	}
	var out []ScheduleFiring
	var errs []error
	for _, id := range ids {
		f, ok, err := c.fireSchedule(ctx, id)
		if err != nil {
			errs = append(errs, err)
		}
		if ok {
			out = append(out, f)
		}
		if ctx.Err() != nil {
			break
		}
	}
	return out, errors.Join(errs...)
}

// fireSchedule fires one schedule; ok says this call claimed a firing.
func (c *Client) fireSchedule(ctx context.Context, id string) (ScheduleFiring, bool, error) {
	rec, err := c.readSchedule(ctx, id)
	if err != nil || rec == nil {
		return ScheduleFiring{}, false, err
	}
	return c.fireRecord(ctx, rec)
}

// fireRecord fires a schedule as read in rec: the claim fails when the
// schedule changed since.
func (c *Client) fireRecord(ctx context.Context, rec *scheduleRecord) (ScheduleFiring, bool, error) {
	cl, err := c.claim(ctx, rec)
	if err != nil || cl == nil {
		return ScheduleFiring{}, false, err
	}
	s, id := rec.spec, rec.spec.ID
	out := ScheduleFiring{Schedule: id, Skipped: cl.skipped}
	if len(cl.slots) == 0 {
		return out, true, nil
	}
	out.Err = c.submitSlots(ctx, s, cl.slots, cl.at, &out)
	if out.Err != nil && (Temporary(out.Err) || ctx.Err() != nil) {
		return out, true, nil // the claim stays; after its lease another process fires the slots
	}
	last, task, msg := cl.slots[len(cl.slots)-1], "", ""
	if len(out.Tasks) > 0 {
		last, task = out.Slots[len(out.Slots)-1], out.Tasks[len(out.Tasks)-1]
	}
	if out.Err != nil {
		msg = boundError(out.Err.Error())
	}
	err = lua.ScheduleDone.Run(ctx, c.rdb, c.scheduleKeys(id, false), id, cl.token, ms(last), task, ms(c.cfg.Now()), msg,
		ScheduleLease.Milliseconds()).Err()
	if err != nil {
		return out, true, fmt.Errorf("dsat: record the firing of schedule %s: %w", id, err)
	}
	return out, true, nil
}

// claimed is a firing this process won.
type claimed struct {
	token   string
	at      time.Time
	slots   []time.Time
	skipped int
}

// claim decides the firing of a schedule as read in rec and claims it;
// nil when nothing is due or another process came first.
func (c *Client) claim(ctx context.Context, rec *scheduleRecord) (*claimed, error) {
	s, id := rec.spec, rec.spec.ID
	if p, err := c.Pipeline(s.Pipeline); err != nil || p.Draining {
		return nil, nil // left to the processes that loaded the pipeline (from a file: Submit refuses a draining one)
	}
	now := c.cfg.Now()
	slots, f, err := c.planFiring(rec, now)
	if err != nil || (len(slots) == 0 && f.Skipped == 0 && f.Next.Equal(msTime(rec.fields["next"]).Time)) {
		return nil, err // nothing due (another process was first), or a claim still running
	}
	cl := &claimed{token: claimToken(), at: now, slots: slots, skipped: f.Skipped}
	nextMS, runMS := "", ""
	if !f.Next.IsZero() {
		nextMS, runMS = ms(f.Next), ms(f.Next.Add(jitter(id, f.Next, s.jitterOf())))
	}
	list := make([]string, len(slots))
	for i, sl := range slots {
		list[i] = ms(sl)
	}
	code, err := lua.ScheduleClaim.Run(ctx, c.rdb, c.scheduleKeys(id, false), id, rec.fields["seq"], ms(now),
		strings.Join(list, ","), nextMS, runMS, f.Skipped, cl.token, ScheduleLease.Milliseconds()).Int()
	if err != nil {
		return nil, fmt.Errorf("dsat: claim schedule %s: %w", id, err)
	}
	if code != 1 {
		return nil, nil // another process claimed it, or it changed
	}
	return cl, nil
}

// planFiring decides which slots to fire: those of a claim whose lease
// ended (taken over), then the due slots the catch-up policy keeps.
func (c *Client) planFiring(rec *scheduleRecord, now time.Time) ([]time.Time, firing, error) {
	next := msTime(rec.fields["next"]).Time
	f := firing{Next: next}
	var slots []time.Time
	if pending := rec.fields["fire"]; pending != "" {
		if now.Before(msTime(rec.fields["fire_at"]).Add(ScheduleLease)) {
			return nil, f, nil // its claim holder is still at it
		}
		for _, v := range strings.Split(pending, ",") {
			if t := msTime(v); !t.IsZero() {
				slots = append(slots, t.Time)
			}
		}
	}
	if rec.spec.Paused || next.IsZero() {
		return slots, f, nil
	}
	tm, err := timingOf(rec.spec)
	if err != nil {
		return nil, f, err
	}
	id, j := rec.spec.ID, rec.spec.jitterOf()
	f = plan(tm, rec.spec.Catchup, func(t time.Time) time.Duration { return jitter(id, t, j) }, next, now)
	return append(slots, f.Fire...), f, nil
}

// submitSlots submits each slot's task, in order, and stops at the first
// error. It gives up on a claim older than half the idempotency TTL (a
// process stalled that long): the slots' keys could have expired after
// another process fired them.
func (c *Client) submitSlots(ctx context.Context, s ScheduleSpec, slots []time.Time, claimed time.Time, out *ScheduleFiring) error {
	for _, slot := range slots {
		if c.cfg.Now().Sub(claimed) > c.cfg.IdempotencyTTL/2 {
			return fmt.Errorf("dsat: schedule %s: claim of %s too old to submit safely", s.ID, claimed.UTC().Format(time.RFC3339))
		}
		sub, err := c.Submit(ctx, s.Pipeline, s.Payload, SubmitOptions{IdempotencyKey: SlotKey(s.ID, slot)})
		if err != nil && !(errors.Is(err, ErrIdempotencyConflict) && sub.ID != "") {
			return fmt.Errorf("schedule %s, slot %s: %w", s.ID, slot.UTC().Format(TimeFormat), err)
		}
		// A conflict: the slot's task exists, made before the payload was
		// changed.
		out.Slots, out.Tasks = append(out.Slots, slot), append(out.Tasks, sub.ID)
	}
	return nil
}

func claimToken() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// boundError bounds an error text stored in the schedule.
func boundError(s string) string {
	if len(s) > maxErrorText {
		return s[:maxErrorText] + "..."
	}
	return s
}

// SlotTask returns the id of the task a schedule's slot submitted, read
// from the slot's idempotency key (so while it lives: the client's
// IdempotencyTTL, 24 h by default); ErrTaskNotFound when there is none.
func (c *Client) SlotTask(ctx context.Context, pipeline, schedule string, slot time.Time) (string, error) {
	p, err := c.Pipeline(pipeline)
	if err != nil {
		return "", err
	}
	key := SlotKey(schedule, slot)
	// The partition Submit picks for an idempotency key.
	part := p.Partition(int(fnv32a(key) % uint32(p.Partitions)))
	v, err := c.rdb.Get(ctx, c.keys.Idempotency(part, key)).Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("%w: no task for schedule %s at %s", ErrTaskNotFound, schedule, slot.UTC().Format(TimeFormat))
	}
	if err != nil {
		return "", fmt.Errorf("dsat: slot task: %w", err)
	}
	id, _, _ := strings.Cut(v, " ")
	return id, nil
}
