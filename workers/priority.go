package workers

import "context"

// applyPriorities reads which pipelines use priorities (dsat.Client.
// RefreshPriorities, one read per FlowInterval) and tells the readers of
// their steps, which from then on read the high and low streams too. A
// pipeline that never had a high or low task keeps its one stream per step
// and partition: its readers pay nothing. A failed read keeps the last
// state.
func (s *Satellite) applyPriorities(ctx context.Context) {
	if err := s.c.RefreshPriorities(ctx); err != nil {
		if ctx.Err() == nil {
			s.logLimited("priorities", s.log.Warn().Err(err), "read the pipelines that use priorities failed; keeping the last state")
		}
		return
	}
	for _, r := range s.steps {
		if s.c.PrioritiesUsed(r.p.Name) {
			r.prio.Store(true)
		}
	}
}

// enablePriorities makes the reader cover the step's high and low streams
// (reader goroutine only); on failure it tries again at its next read.
func (r *stepRunner) enablePriorities(ctx context.Context) {
	if err := r.reader.EnablePriorities(ctx); err != nil {
		if ctx.Err() == nil {
			r.s.logLimited(r.name()+"/priorities", r.log.Warn().Err(err), "could not create the consumer groups of the priority streams; trying again")
		}
		return
	}
	r.log.Info().Msg("the pipeline uses priorities: reading high, normal and low tokens")
}
