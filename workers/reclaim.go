package workers

import (
	"context"
	"fmt"
	"time"

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
	part   int       // stream being scanned (dsat.StepReader.Stream)
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
		part, level := r.reader.Stream(st.part)
		claimed, deleted, next, err := r.reader.Claim(ctx, st.part, r.vis, st.cursor, n)
		if err != nil {
			if dsat.IsNoGroup(err) {
				// Often the reclaim scan meets a lost group before the
				// reader's blocking read does: say so here too.
				r.recreateGroups(ctx, r.log.Warn().Err(err), "consumer group missing (found by the reclaim scan); recreating it")
			} else if ctx.Err() == nil {
				r.s.logLimited(r.name()+"/reclaim", r.log.Warn().Err(err), "reclaim failed")
			}
			r.scanDone(ctx, st)
			return nil
		}
		for _, id := range deleted {
			r.deadLetter(msgRef{Part: part, Priority: level, ID: id}, "payload lost: the entry was deleted while pending")
		}
		refs := r.dropPoison(ctx, claimed)
		st.cursor = next
		if next == "0-0" || next == "" {
			st.cursor = "0-0"
			if st.part++; st.part >= r.reader.Streams() {
				st.part = 0
				r.scanDone(ctx, st)
			}
		}
		if len(refs) > 0 {
			r.log.Info().Int("tokens", len(refs)).Str("partition", part.Tag()).Msg("reclaimed abandoned tokens")
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
	deliveries := r.reader.Deliveries(ctx, refs)
	keep := refs[:0]
	for i, m := range refs {
		if deliveries[i] <= int64(r.step.Attempts()) {
			keep = append(keep, m)
			continue
		}
		env, err := r.parse(m)
		if err != nil {
			r.deadLetter(m, err.Error())
			continue
		}
		d := dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: r.s.cfg.ID}
		msg := fmt.Sprintf("poison: delivered %d times, the step allows %d attempts", deliveries[i], r.step.Attempts())
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
	for _, name := range r.reader.PruneConsumers(ctx, idleFor, func(name string) bool { return name == r.s.cfg.ID || live[name] }) {
		r.log.Info().Str("consumer", name).Msg("removed consumer of a dead satellite")
	}
}
