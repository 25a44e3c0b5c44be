package workers

import (
	"context"
	"os"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// heartbeatLoop reports the satellite every HeartbeatInterval: a record
// with its pools' load that expires after three intervals, so a dead
// satellite disappears by itself.
func (s *Satellite) heartbeatLoop(ctx context.Context) {
	every(ctx, s.cfg.HeartbeatInterval, func(ctx context.Context) {
		if err := s.c.PutSatellite(ctx, s.info(), 3*s.cfg.HeartbeatInterval); err != nil && ctx.Err() == nil {
			s.logLimited("heartbeat", s.log.Warn().Err(err), "heartbeat failed")
		}
	})
}

// Info returns the satellite's current record: identity and, per step
// ("pipeline/step"), concurrency, busy workers, processed and failed
// counts, backlog and pending tokens.
func (s *Satellite) Info() dsat.SatelliteInfo {
	return s.info()
}

func (s *Satellite) info() dsat.SatelliteInfo {
	host, _ := os.Hostname()
	info := dsat.SatelliteInfo{ID: s.cfg.ID, Host: host, PID: os.Getpid(), Version: s.cfg.Version,
		StartedAt: dsat.Time{Time: s.start.UTC()}, LastSeen: dsat.Time{Time: time.Now().UTC()}, Steps: map[string]dsat.StepLoad{}}
	for _, r := range s.steps {
		limit, busy := r.pool.load()
		info.Steps[r.name()] = dsat.StepLoad{Concurrency: limit, Busy: busy, Processed: r.processed.Load(),
			Failed: r.failed.Load(), Backlog: r.backlog.Load(), Pending: r.pending.Load()}
	}
	return info
}

func (s *Satellite) removeHeartbeat() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = s.c.RemoveSatellite(ctx, s.cfg.ID)
}

// liveSatellites returns the ids of satellites whose records exist.
func (s *Satellite) liveSatellites(ctx context.Context) (map[string]bool, error) {
	sats, err := s.c.Satellites(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string]bool{s.cfg.ID: true}
	for _, x := range sats {
		out[x.ID] = true
	}
	return out, nil
}
