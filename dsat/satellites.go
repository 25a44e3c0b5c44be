package dsat

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// SatelliteInfo is a satellite's heartbeat record (docs/design.md §2, §3).
type SatelliteInfo struct {
	ID        string              `json:"id"`
	Host      string              `json:"host"`
	PID       int                 `json:"pid"`
	Version   string              `json:"version"`
	StartedAt Time                `json:"started_at"`
	LastSeen  Time                `json:"last_seen"`
	Steps     map[string]StepLoad `json:"steps"`
}

// StepLoad is one step's pool on one satellite; keys of
// SatelliteInfo.Steps are "pipeline/step".
type StepLoad struct {
	Concurrency int   `json:"concurrency"`
	Busy        int   `json:"busy"`
	Processed   int64 `json:"processed"`
	Failed      int64 `json:"failed"`
	Backlog     int64 `json:"backlog"`
	Pending     int64 `json:"pending"`
}

// PutSatellite writes a heartbeat record that expires after ttl.
func (c *Client) PutSatellite(ctx context.Context, info SatelliteInfo, ttl time.Duration) error {
	b, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("dsat: satellite record: %w", err)
	}
	now := c.cfg.Now()
	_, err = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, c.keys.Satellite(info.ID), b, ttl)
		p.ZAdd(ctx, c.keys.Satellites(), redis.Z{Score: float64(now.UnixMilli()), Member: info.ID})
		p.ZRemRangeByScore(ctx, c.keys.Satellites(), "-inf", strconv.FormatInt(now.Add(-ttl).UnixMilli(), 10))
		return nil
	})
	if err != nil {
		return fmt.Errorf("dsat: heartbeat: %w", err)
	}
	return nil
}

// RemoveSatellite deletes a satellite's record (on a clean shutdown).
func (c *Client) RemoveSatellite(ctx context.Context, id string) error {
	_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, c.keys.Satellite(id))
		p.ZRem(ctx, c.keys.Satellites(), id)
		return nil
	})
	return err
}

// Satellites lists the live satellites (whose record has not expired),
// sorted by id.
func (c *Client) Satellites(ctx context.Context) ([]SatelliteInfo, error) {
	ids, err := c.rdb.ZRange(ctx, c.keys.Satellites(), 0, -1).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: satellites: %w", err)
	}
	out := []SatelliteInfo{}
	for _, id := range ids {
		b, err := c.rdb.Get(ctx, c.keys.Satellite(id)).Bytes()
		if err == redis.Nil {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dsat: satellite %s: %w", id, err)
		}
		var info SatelliteInfo
		if json.Unmarshal(b, &info) == nil {
			out = append(out, info)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

// StepLoads measures each step's backlog (entries not yet delivered) and
// pending tokens (delivered, not acknowledged) over every partition (and
// priority level, for a pipeline that uses priorities), in one
// round trip. Acknowledged entries are deleted, so a stream's length is
// exactly backlog + pending. With no steps named, it measures them all.
func (c *Client) StepLoads(ctx context.Context, p *Pipeline, steps ...string) (map[string]StepLoad, error) {
	if len(steps) == 0 {
		steps = p.Order
	}
	type cmds struct {
		xlen *redis.IntCmd
		pend *redis.XPendingCmd
	}
	all := map[string][]cmds{}
	levels := c.levels(ctx, p) // normal only, unless p uses priorities
	_, err := c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, s := range steps {
			for n := 0; n < p.Partitions; n++ {
				for _, level := range levels {
					key := c.keys.StepAt(p.Partition(n), s, level)
					all[s] = append(all[s], cmds{pipe.XLen(ctx, key), pipe.XPending(ctx, key, s)})
				}
			}
		}
		return nil
	})
	if err != nil && !redis.HasErrorPrefix(err, "NOGROUP") {
		return nil, fmt.Errorf("dsat: step load: %w", err)
	}
	out := map[string]StepLoad{}
	for s, cs := range all {
		var l StepLoad
		var total int64
		for _, cm := range cs {
			total += cm.xlen.Val()
			if pi, err := cm.pend.Result(); err == nil {
				l.Pending += pi.Count
			}
		}
		l.Backlog = max(0, total-l.Pending)
		out[s] = l
	}
	return out, nil
}
