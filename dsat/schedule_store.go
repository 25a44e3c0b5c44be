package dsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/lua"
)

// ScheduleInfo is a schedule as the API shows it: its definition and what
// its firings did.
type ScheduleInfo struct {
	ScheduleSpec
	// NextRunAt is when the next slot's task will be submitted (its jitter
	// included); null while paused.
	NextRunAt Time `json:"next_run_at"`
	// LastSlot is the slot of the latest firing, LastRunAt when it ran and
	// LastTask the task it submitted.
	LastSlot  Time   `json:"last_slot"`
	LastRunAt Time   `json:"last_run_at"`
	LastTask  string `json:"last_task"`
	// LastError says why the latest firing could not submit its task ("").
	LastError string `json:"last_error,omitempty"`
	// Skipped counts the slots the catch-up policy passed over.
	Skipped   int64 `json:"skipped"`
	CreatedAt Time  `json:"created_at"`
	UpdatedAt Time  `json:"updated_at"`
}

// scheduleRecord is a schedule's hash, read.
type scheduleRecord struct {
	spec   ScheduleSpec
	fields map[string]string
}

func (r *scheduleRecord) info() ScheduleInfo {
	f := r.fields
	in := ScheduleInfo{ScheduleSpec: r.spec, LastSlot: msTime(f["last_slot"]), LastRunAt: msTime(f["last_run"]),
		LastTask: f["last_task"], LastError: f["last_error"], CreatedAt: msTime(f["created"]), UpdatedAt: msTime(f["updated"])}
	in.Skipped, _ = strconv.ParseInt(f["skipped"], 10, 64)
	if !r.spec.Paused {
		in.NextRunAt = msTime(f["next_run"])
	}
	return in
}

// readSchedule reads one schedule; nil when there is none.
func (c *Client) readSchedule(ctx context.Context, id string) (*scheduleRecord, error) {
	h, err := c.rdb.HGetAll(ctx, c.keys.Schedule(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: read schedule %s: %w", id, err)
	}
	return parseScheduleRecord(id, h)
}

func parseScheduleRecord(id string, h map[string]string) (*scheduleRecord, error) {
	if len(h) == 0 || h["def"] == "" {
		return nil, nil
	}
	r := &scheduleRecord{fields: h}
	if err := json.Unmarshal([]byte(h["def"]), &r.spec); err != nil {
		return nil, fmt.Errorf("dsat: schedule %s: stored definition: %w", id, err)
	}
	r.spec.ID = id
	r.spec.Paused = h["paused"] == "1"
	return r, nil
}

// checkScheduleID returns an error wrapping ErrInvalidSchedule unless id
// is a valid schedule id (it becomes part of a key).
func checkScheduleID(id string) error {
	if !ValidName(id) {
		return fmt.Errorf("%w: id %q must be 1 to %d characters of a-z, 0-9, '_' or '-'", ErrInvalidSchedule, trimText(id), MaxNameLen)
	}
	return nil
}

// CheckSchedule normalizes a definition (see ScheduleSpec.Normalize) and
// checks that its pipeline is loaded: the errors wrap ErrInvalidSchedule,
// or ErrPipelineNotFound.
func (c *Client) CheckSchedule(s ScheduleSpec) (ScheduleSpec, error) {
	s, ps := s.Normalize(c.cfg.MaxPayload)
	if len(ps) > 0 {
		msgs := make([]string, len(ps))
		for i, p := range ps {
			msgs[i] = fmt.Sprintf("field %q: %s", p.Field, p.Msg)
		}
		return s, fmt.Errorf("%w: %s", ErrInvalidSchedule, strings.Join(msgs, "; "))
	}
	if p, err := c.Pipeline(s.Pipeline); err != nil || p.Draining {
		if err == nil {
			err = fmt.Errorf("%w: %q: only its draining version %s is loaded", ErrPipelineNotFound, s.Pipeline, p.Version)
		}
		return s, fmt.Errorf("%w (field \"pipeline\" of schedule %s)", err, s.ID)
	}
	return s, nil
}

// PutSchedule creates or replaces a schedule. created is true for a new
// one. A schedule whose timing (every, cron, timezone) is unchanged keeps
// its next slot; a new timing, or a resume, starts at the first slot after
// now. Any number of processes may call it at once.
func (c *Client) PutSchedule(ctx context.Context, s ScheduleSpec) (info ScheduleInfo, created bool, err error) {
	s, err = c.CheckSchedule(s)
	if err != nil {
		return ScheduleInfo{}, false, err
	}
	return c.updateSchedule(ctx, s.ID, func(*ScheduleSpec) (ScheduleSpec, error) { return s, nil })
}

// UpsertSchedules puts the schedules declared in pipeline files (serve does
// it at start). A schedule that exists keeps its paused state: pausing and
// resuming are an operator's acts that outlive restarts.
func (c *Client) UpsertSchedules(ctx context.Context, specs []ScheduleSpec) error {
	for _, s := range specs {
		s, err := c.CheckSchedule(s)
		if err != nil {
			return err
		}
		_, _, err = c.updateSchedule(ctx, s.ID, func(old *ScheduleSpec) (ScheduleSpec, error) {
			if old != nil {
				s.Paused = old.Paused
			}
			return s, nil
		})
		if err != nil {
			return fmt.Errorf("schedule %s: %w", s.ID, err)
		}
	}
	return nil
}

// PauseSchedule pauses (paused true) or resumes a schedule. A resumed
// schedule starts at the first slot after now: the slots it passed while
// paused are not caught up.
func (c *Client) PauseSchedule(ctx context.Context, id string, paused bool) (ScheduleInfo, error) {
	if err := checkScheduleID(id); err != nil {
		return ScheduleInfo{}, err
	}
	info, _, err := c.updateSchedule(ctx, id, func(old *ScheduleSpec) (ScheduleSpec, error) {
		if old == nil {
			return ScheduleSpec{}, fmt.Errorf("%w: %q", ErrScheduleNotFound, id)
		}
		s := *old
		s.Paused = paused
		return s, nil
	})
	return info, err
}

// updateSchedule is a compare-and-set loop: read the schedule, let change
// build the new definition from the old one (nil when there is none),
// write it unless another writer came first, else read again.
func (c *Client) updateSchedule(ctx context.Context, id string, change func(old *ScheduleSpec) (ScheduleSpec, error)) (ScheduleInfo, bool, error) {
	for try := 0; try < 20; try++ {
		rec, err := c.readSchedule(ctx, id)
		if err != nil {
			return ScheduleInfo{}, false, err
		}
		var old *ScheduleSpec
		seq := ""
		if rec != nil {
			old, seq = &rec.spec, rec.fields["seq"]
		}
		s, err := change(old)
		if err != nil {
			return ScheduleInfo{}, false, err
		}
		if old != nil && sameSpec(*old, s) {
			return rec.info(), false, nil // nothing to write
		}
		args, err := c.putArgs(rec, s)
		if err != nil {
			return ScheduleInfo{}, false, err
		}
		code, err := lua.SchedulePut.Run(ctx, c.rdb, c.scheduleKeys(id, true), append([]any{id, seq}, args...)...).Int()
		if err != nil {
			return ScheduleInfo{}, false, fmt.Errorf("dsat: put schedule %s: %w", id, err)
		}
		switch code {
		case 1, 2:
			rec, err := c.readSchedule(ctx, id)
			if err != nil || rec == nil {
				return ScheduleInfo{}, false, errors.Join(err, fmt.Errorf("%w: %q (deleted meanwhile)", ErrScheduleNotFound, id))
			}
			return rec.info(), code == 1, nil
		case -2:
			return ScheduleInfo{}, false, fmt.Errorf("%w: at most %d; delete one first", ErrTooManySchedules, MaxSchedules)
		}
		if err := ctx.Err(); err != nil {
			return ScheduleInfo{}, false, err
		}
	}
	return ScheduleInfo{}, false, fmt.Errorf("dsat: put schedule %s: changed by others 20 times in a row; try again", id)
}

// putArgs are schedule_put.lua's ARGV[3..9] for the new definition s of
// the schedule rec (nil for a new one).
func (c *Client) putArgs(rec *scheduleRecord, s ScheduleSpec) ([]any, error) {
	def, err := json.Marshal(storedSpec(s))
	if err != nil {
		return nil, fmt.Errorf("dsat: schedule %s: %w", s.ID, err)
	}
	tm, err := timingOf(s)
	if err != nil {
		return nil, err
	}
	now := c.cfg.Now()
	next := tm.after(now)
	if rec != nil && rec.spec.sameTiming(s) && !rec.spec.Paused && rec.fields["next"] != "" {
		next = msTime(rec.fields["next"]).Time // same slots, and not a resume: go on where it was
	}
	nextMS, runMS := "", ""
	if !next.IsZero() {
		nextMS, runMS = ms(next), ms(next.Add(jitter(s.ID, next, s.jitterOf())))
	}
	paused := "0"
	if s.Paused {
		paused = "1"
	}
	return []any{string(def), paused, nextMS, runMS, ms(now), MaxSchedules, ScheduleLease.Milliseconds()}, nil
}

// storedSpec is the definition as stored in the hash's def field: without
// the id (the key has it) and paused (a field of its own).
func storedSpec(s ScheduleSpec) ScheduleSpec {
	s.ID, s.Paused = "", false
	return s
}

func sameSpec(a, b ScheduleSpec) bool {
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return string(x) == string(y)
}

// scheduleKeys are a schedule script's KEYS: the hash, the due set and,
// with index, the index.
func (c *Client) scheduleKeys(id string, index bool) []string {
	keys := []string{c.keys.Schedule(id), c.keys.SchedulesDue()}
	if index {
		keys = append(keys, c.keys.ScheduleIndex())
	}
	return keys
}

// GetSchedule returns one schedule.
func (c *Client) GetSchedule(ctx context.Context, id string) (ScheduleInfo, error) {
	if err := checkScheduleID(id); err != nil {
		return ScheduleInfo{}, err
	}
	rec, err := c.readSchedule(ctx, id)
	if err != nil {
		return ScheduleInfo{}, err
	}
	if rec == nil {
		return ScheduleInfo{}, fmt.Errorf("%w: %q", ErrScheduleNotFound, id)
	}
	return rec.info(), nil
}

// Schedules lists every schedule, sorted by id (at most MaxSchedules), in
// one round trip after the index.
func (c *Client) Schedules(ctx context.Context) ([]ScheduleInfo, error) {
	ids, err := c.rdb.ZRange(ctx, c.keys.ScheduleIndex(), 0, MaxSchedules-1).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: list schedules: %w", err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, c.keys.Schedule(id))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dsat: list schedules: %w", err)
	}
	out := []ScheduleInfo{}
	for i, id := range ids {
		rec, err := parseScheduleRecord(id, cmds[i].Val())
		if err != nil {
			return nil, err
		}
		if rec != nil {
			out = append(out, rec.info())
		}
	}
	return out, nil
}

// DeleteSchedule deletes a schedule. A firing claimed before still
// submits its tasks.
func (c *Client) DeleteSchedule(ctx context.Context, id string) error {
	if err := checkScheduleID(id); err != nil {
		return err
	}
	var del *redis.IntCmd
	_, err := c.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, c.keys.Schedule(id))
		p.ZRem(ctx, c.keys.SchedulesDue(), id)
		p.ZRem(ctx, c.keys.ScheduleIndex(), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("dsat: delete schedule %s: %w", id, err)
	}
	if del.Val() == 0 {
		return fmt.Errorf("%w: %q", ErrScheduleNotFound, id)
	}
	return nil
}

// SlotKey is the idempotency key of a schedule's slot: every firing of the
// slot submits with it, so the slot has one task.
func SlotKey(id string, slot time.Time) string {
	return "schedule/" + id + "/" + ms(slot)
}
