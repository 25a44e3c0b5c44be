package workers

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
)

// reclaimInterval is how often this step looks for abandoned tokens.
func (r *stepRunner) reclaimInterval() time.Duration {
	if d := r.s.cfg.ReclaimInterval; d > 0 {
		return d
	}
	return min(max(r.vis/4, time.Second), 15*time.Second)
}

// reclaimState is the reader's position in the reclaim scan.
type reclaimState struct {
	due    time.Time // when the next scan starts
	part   int       // partition being scanned
	cursor string    // XAUTOCLAIM cursor within it
	rounds int       // completed scans
}

// reclaim claims up to n tokens that sat un-acknowledged longer than the
// visibility timeout (their satellite died or lost its connection) so the
// reader runs them like new ones. It dead-letters poison tokens and entries
// whose payload was deleted. The reader calls it when a scan is due, with
// the pool slots it holds, so reclaiming never competes with reading for
// slots. One XAUTOCLAIM scans at most 10×COUNT entries: the scan goes on
// from its cursor until every partition was walked once.
func (r *stepRunner) reclaim(ctx context.Context, n int, st *reclaimState) []msgRef {
	if st.cursor == "" {
		st.cursor = "0-0"
	}
	for pass := 0; pass < 20 && ctx.Err() == nil; pass++ {
		key, part := r.streams[st.part], r.parts[st.part]
		msgs, next, deleted, err := r.s.rdb.XAutoClaimWithDeleted(ctx, &redis.XAutoClaimArgs{
			Stream: key, Group: r.step.Name, Consumer: r.s.cfg.ID, MinIdle: r.vis, Start: st.cursor, Count: int64(n),
		}).Result()
		if err != nil {
			if redis.HasErrorPrefix(err, "NOGROUP") {
				_ = r.ensureGroups(ctx)
			} else if ctx.Err() == nil {
				r.s.logLimited(r.name()+"/reclaim", r.log.Warn().Err(err), "reclaim failed")
			}
			r.scanDone(ctx, st)
			return nil
		}
		for _, id := range deleted {
			r.deadLetter(msgRef{part: part, stream: key, msg: redis.XMessage{ID: id}}, "payload lost: the entry was deleted while pending")
		}
		refs := make([]msgRef, 0, len(msgs))
		for _, m := range msgs {
			refs = append(refs, msgRef{part: part, stream: key, msg: m})
		}
		refs = r.dropPoison(ctx, refs)
		st.cursor = next
		if next == "0-0" || next == "" {
			st.cursor = "0-0"
			if st.part++; st.part == len(r.streams) {
				st.part = 0
				r.scanDone(ctx, st)
			}
		}
		if len(refs) > 0 {
			r.log.Info().Int("tokens", len(refs)).Str("stream", key).Msg("reclaimed abandoned tokens")
			return refs
		}
		if !st.due.Before(time.Now()) {
			return nil // the scan is complete
		}
	}
	return nil
}

// scanDone schedules the next scan; every tenth also removes consumers of
// dead satellites.
func (r *stepRunner) scanDone(ctx context.Context, st *reclaimState) {
	st.due = time.Now().Add(r.reclaimInterval())
	st.part, st.cursor = 0, "0-0"
	if st.rounds++; st.rounds%10 == 0 {
		r.removeDeadConsumers(ctx)
	}
}

// dropPoison dead-letters the tokens delivered more times than the step's
// attempts allow (each delivery of one entry is a run that never
// finished: the handler keeps crashing its satellite), and returns the rest.
func (r *stepRunner) dropPoison(ctx context.Context, refs []msgRef) []msgRef {
	if len(refs) == 0 {
		return refs
	}
	cmds := make([]*redis.XPendingExtCmd, len(refs))
	_, _ = r.s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, m := range refs {
			cmds[i] = p.XPendingExt(ctx, &redis.XPendingExtArgs{Stream: m.stream, Group: r.step.Name, Start: m.msg.ID, End: m.msg.ID, Count: 1})
		}
		return nil
	})
	keep := refs[:0]
	for i, m := range refs {
		pend, err := cmds[i].Result()
		if err != nil || len(pend) == 0 || pend[0].RetryCount <= int64(r.step.Attempts()) {
			keep = append(keep, m)
			continue
		}
		env, err := r.parse(m)
		if err != nil {
			r.deadLetter(m, err.Error())
			continue
		}
		d := dsat.Delivery{Envelope: env, EntryID: m.msg.ID, Worker: r.s.cfg.ID}
		msg := fmt.Sprintf("poison: delivered %d times, the step allows %d attempts", pend[0].RetryCount, r.step.Attempts())
		err = r.s.engine(func(ctx context.Context) error {
			_, _, err := r.s.c.Fail(ctx, d, dsat.Failure{Message: msg, Final: true})
			return err
		})
		r.failed.Add(1)
		r.log.Warn().Err(err).Str("task", d.Task).Str("token", d.Token).Str("reason", msg).Msg("poison token dead-lettered")
	}
	return keep
}

// removeDeadConsumers deletes consumers that have no pending entries, have
// been idle for long and whose satellite no longer reports itself. A
// consumer with pending entries is never deleted: XGROUP DELCONSUMER would
// make them unclaimable.
func (r *stepRunner) removeDeadConsumers(ctx context.Context) {
	live, err := r.s.liveSatellites(ctx)
	if err != nil {
		return
	}
	idleFor := r.s.cfg.DeadConsumerIdle
	if idleFor <= 0 {
		idleFor = max(2*r.vis, 10*time.Minute)
	}
	for _, key := range r.streams {
		cs, err := r.s.rdb.XInfoConsumers(ctx, key, r.step.Name).Result()
		if err != nil {
			continue
		}
		for _, c := range cs {
			if c.Pending > 0 || c.Name == r.s.cfg.ID || live[c.Name] || c.Idle < idleFor {
				continue
			}
			if err := r.s.rdb.XGroupDelConsumer(ctx, key, r.step.Name, c.Name).Err(); err == nil {
				r.log.Info().Str("consumer", c.Name).Str("stream", key).Msg("removed consumer of a dead satellite")
			}
		}
	}
}
