package dsat

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// EventBreaker is a pipeline-level event: a step's circuit breaker moved
// to another state (detail BreakerDetail). It has no task (Task "", Seq
// 0, Attempt 0); its Step is the breaker's step and its Worker the
// satellite that saw the transition.
const EventBreaker = "BREAKER"

// pipelineMark starts the pipeline-level events of a firehose entry: a
// line "!<pipeline>", where a task's events start with "@<task>".
const pipelineMark = "!"

// PublishBreaker appends a BREAKER event (the breaker of pipeline/step
// moved to st, seen by worker at at) to the firehose of the loaded
// pipeline's partition 0: one XADD. Once, not per partition, so that a
// pipeline feed (which merges every partition) shows it once; a task's
// feed never shows it. The breaker's keys live in their own slot
// ({breakers}), so this cannot be atomic with breaker.lua: a satellite
// that dies between the two loses the event (the state in Breakers and
// the transition counts still show it).
func (c *Client) PublishBreaker(ctx context.Context, pipeline, step, worker string, st BreakerState, at time.Time) error {
	p, err := c.Pipeline(pipeline)
	if err != nil {
		return err
	}
	d := BreakerDetail{State: st.State}
	if st.State != BreakerClosed {
		d.Until = &st.Until
	}
	detail, err := json.Marshal(d)
	if err != nil {
		return err
	}
	x := pipelineMark + pipeline + "\n0|" + EventBreaker + "|0|" + strconv.FormatInt(at.UnixMilli(), 10) + "|" + step + "|" + worker + "|" + string(detail)
	// Capped as the scripts cap it (lua/lib.lua, publish: maxlen divided
	// by the entry's tasks; one group of lines here).
	err = c.rdb.XAdd(ctx, &redis.XAddArgs{Stream: c.keys.Firehose(p.Partition(0)), MaxLen: c.cfg.FirehoseMaxLen, Approx: true, Values: []any{"x", x}}).Err()
	if err != nil {
		return fmt.Errorf("dsat: publish the breaker of %s/%s: %w", pipeline, step, err)
	}
	return nil
}

// BreakerTransitions returns how many times each breaker moved to each
// state, by "pipeline/step" and state (open, half_open, closed), over
// every satellite since the counts began.
func (c *Client) BreakerTransitions(ctx context.Context) (map[string]map[string]int64, error) {
	m, err := c.rdb.HGetAll(ctx, c.keys.BreakerTransitions()).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: read breaker transitions: %w", err)
	}
	out := map[string]map[string]int64{}
	for f, v := range m {
		i := len(f) - 1
		for i >= 0 && f[i] != '|' {
			i--
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if i < 0 || err != nil {
			continue
		}
		if out[f[:i]] == nil {
			out[f[:i]] = map[string]int64{}
		}
		out[f[:i]][f[i+1:]] = n
	}
	return out, nil
}
