package dsat

import (
	"context"
	"errors"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// TaskBrief is what many tasks can be read for at once: their status and
// times. Status is "" for a task that does not exist (or expired).
type TaskBrief struct {
	ID                   string
	Status               string
	CreatedAt, UpdatedAt Time
}

// Briefs reads the status and times of many tasks, in pipelines of 1,000
// reads; a task id that does not parse gets an empty brief.
func (c *Client) Briefs(ctx context.Context, ids []string) ([]TaskBrief, error) {
	out := make([]TaskBrief, len(ids))
	for start := 0; start < len(ids); start += 1000 {
		chunk := ids[start:min(start+1000, len(ids))]
		cmds := make([]*redis.SliceCmd, len(chunk))
		_, err := c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, id := range chunk {
				if tid, err := ParseTaskID(id); err == nil {
					cmds[i] = p.HMGet(ctx, c.keys.Task(tid.Partition, id), "status", "created", "updated")
				}
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("dsat: read task statuses: %w", err)
		}
		for i, id := range chunk {
			b := TaskBrief{ID: id}
			if cmds[i] != nil {
				if v := cmds[i].Val(); len(v) == 3 {
					str := func(x any) string { s, _ := x.(string); return s }
					b.Status, b.CreatedAt, b.UpdatedAt = str(v[0]), msTime(str(v[1])), msTime(str(v[2]))
				}
			}
			out[start+i] = b
		}
	}
	return out, nil
}

// TaskMemory is the memory Redis uses for a task's own keys (state,
// events, result), by MEMORY USAGE.
func (c *Client) TaskMemory(ctx context.Context, id string) (int64, error) {
	tid, err := ParseTaskID(id)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, k := range []string{c.keys.Task(tid.Partition, id), c.keys.TaskLog(tid.Partition, id), c.keys.TaskResult(tid.Partition, id)} {
		n, err := c.rdb.MemoryUsage(ctx, k).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return 0, fmt.Errorf("dsat: memory usage: %w", err)
		}
		total += n
	}
	return total, nil
}
