package dsat

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Pipeline versions on record (review 8): a process that loads pipelines
// records each version it loads (name, X.Y and partitions) in one hash,
// so that a process that does not load a version can still find the
// tasks of it that never ended — stranded once the version's file left
// every pipelines folder: no worker reads their tokens and no time keeper
// looks at their deadlines (README, "Upgrading or removing a pipeline").

// unfinishedLetters are the task index letters of the statuses a task
// has before it ends (search.go's ixLetter).
var unfinishedLetters = []string{ixLetter[StatusPending], ixLetter[StatusScheduled], ixLetter[StatusRunning]}

// StrandedVersion is a pipeline version on record that this client does
// not load, with tasks that have not ended.
type StrandedVersion struct {
	Pipeline string `json:"pipeline"`
	// API is the version's X.Y (its tasks' hash tags carry it).
	API string `json:"api"`
	// Unfinished counts its pending, scheduled and running tasks.
	Unfinished int64 `json:"unfinished"`
}

// RecordVersions records every pipeline version this client loads (one
// HSET; the record only grows, a field per X.Y ever loaded).
func (c *Client) RecordVersions(ctx context.Context) error {
	args := make([]any, 0, 2*len(c.byAPI))
	for _, p := range c.Pipelines() {
		args = append(args, p.Name+"@"+p.Version.API(), strconv.Itoa(p.Partitions))
	}
	if len(args) == 0 {
		return nil
	}
	if err := c.rdb.HSet(ctx, c.keys.Versions(), args...).Err(); err != nil {
		return fmt.Errorf("dsat: record pipeline versions: %w", err)
	}
	return nil
}

// StrandedVersions returns the versions on record that this client does
// not load and that have unfinished tasks, sorted by name and version:
// one HGETALL, then one pipelined round trip counting the unfinished
// members of their task indexes (ZLEXCOUNT per partition and status).
func (c *Client) StrandedVersions(ctx context.Context) ([]StrandedVersion, error) {
	rec, err := c.rdb.HGetAll(ctx, c.keys.Versions()).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: read pipeline versions: %w", err)
	}
	type counted struct {
		v    StrandedVersion
		cmds []*redis.IntCmd
	}
	var vs []*counted
	_, err = c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for field, parts := range rec {
			name, api, ok := strings.Cut(field, "@")
			n, err := strconv.Atoi(parts)
			if _, loaded := c.byAPI[field]; loaded || !ok || err != nil || n < 1 || n > MaxPartitions {
				continue
			}
			cv := &counted{v: StrandedVersion{Pipeline: name, API: api}}
			for i := range n {
				ix := c.keys.TaskIndex(Partition{Pipeline: name, API: api, N: i})
				for _, l := range unfinishedLetters {
					cv.cmds = append(cv.cmds, pipe.ZLexCount(ctx, ix, "["+l, "("+l+"~"))
				}
			}
			vs = append(vs, cv)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("dsat: count the tasks of unloaded pipeline versions: %w", err)
	}
	var out []StrandedVersion
	for _, cv := range vs {
		for _, cmd := range cv.cmds {
			cv.v.Unfinished += cmd.Val()
		}
		if cv.v.Unfinished > 0 {
			out = append(out, cv.v)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Pipeline != out[j].Pipeline {
			return out[i].Pipeline < out[j].Pipeline
		}
		return out[i].API < out[j].API
	})
	return out, nil
}
