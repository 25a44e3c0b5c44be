package dsat

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/redis/go-redis/v9"
)

// Purge deletes every key of every partition and version of the named
// pipeline (its tasks, streams of every priority level, retries and dead
// letters, and its mark as a pipeline that uses priorities), on each master
// of a cluster, and returns how many it deleted. It is for benchmarks and
// tests: work in flight is lost.
func (c *Client) Purge(ctx context.Context, pipeline string) (int64, error) {
	if !ValidName(pipeline) {
		return 0, fmt.Errorf("%w: %q", ErrInvalidName, pipeline)
	}
	var n atomic.Int64
	purge := func(ctx context.Context, node redis.UniversalClient) error {
		var keys []string
		iter := node.Scan(ctx, 0, c.keys.pipelinePattern(pipeline), 1000).Iterator()
		flush := func() error {
			if len(keys) == 0 {
				return nil
			}
			// One UNLINK per key, pipelined: the keys of one cluster node may
			// be in different slots.
			_, err := node.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, k := range keys {
					p.Unlink(ctx, k)
				}
				return nil
			})
			if err != nil {
				return err
			}
			n.Add(int64(len(keys)))
			keys = keys[:0]
			return nil
		}
		for iter.Next(ctx) {
			if keys = append(keys, iter.Val()); len(keys) == 500 {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		if err := iter.Err(); err != nil {
			return err
		}
		return flush()
	}
	var err error
	if cc, ok := c.rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error { return purge(ctx, node) })
	} else {
		err = purge(ctx, c.rdb)
	}
	if err == nil { // its priority mark too (priority.go)
		err = c.rdb.HDel(ctx, c.keys.Priorities(), pipeline).Err()
		c.prio.mu.Lock()
		delete(c.prio.marked, pipeline)
		delete(c.prio.on, pipeline)
		c.prio.mu.Unlock()
	}
	if err != nil {
		return n.Load(), fmt.Errorf("dsat: purge %s: %w", pipeline, err)
	}
	return n.Load(), nil
}
