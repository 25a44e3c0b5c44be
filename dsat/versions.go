package dsat

import (
	"context"
	"errors"
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

// RecordVersions records every pipeline version this client loads from a
// file, and its definition (one pipelined pair of HSETs; the record only
// grows, a field per X.Y ever loaded, its definition the last loaded).
func (c *Client) RecordVersions(ctx context.Context) error {
	var parts, defs []any
	for _, p := range c.Pipelines() {
		if p.Draining {
			continue
		}
		field := p.Name + "@" + p.Version.API()
		parts = append(parts, field, strconv.Itoa(p.Partitions))
		if len(p.Source) > 0 {
			defs = append(defs, field, p.Source)
		}
	}
	if len(parts) == 0 {
		return nil
	}
	_, err := c.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		pipe.HSet(ctx, c.keys.Versions(), parts...)
		if len(defs) > 0 {
			pipe.HSet(ctx, c.keys.VersionDefinitions(), defs...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("dsat: record pipeline versions: %w", err)
	}
	return nil
}

// DrainingPipelines returns the recorded definitions of the stranded
// versions vs (StrandedVersions), each marked Draining: a process that
// loads them beside its files runs their unfinished tasks to their end,
// and Submit refuses them. A version whose definition is not on record
// (recorded by a dsat older than this one), or no longer parses, is left
// out and its error joined in err; the others are returned anyway.
func (c *Client) DrainingPipelines(ctx context.Context, vs []StrandedVersion) (ps []*Pipeline, err error) {
	if len(vs) == 0 {
		return nil, nil
	}
	fields := make([]string, len(vs))
	for i, v := range vs {
		fields[i] = v.Pipeline + "@" + v.API
	}
	defs, rerr := c.rdb.HMGet(ctx, c.keys.VersionDefinitions(), fields...).Result()
	if rerr != nil {
		return nil, fmt.Errorf("dsat: read recorded pipeline definitions: %w", rerr)
	}
	var errs []error
	for i, d := range defs {
		src, ok := d.(string)
		if !ok {
			errs = append(errs, fmt.Errorf("%w: %s: no definition on record (recorded by an older dsat)", ErrPipelineNotFound, fields[i]))
			continue
		}
		p, perr := ParsePipeline("recorded "+fields[i], []byte(src))
		if perr == nil && p.Name+"@"+p.Version.API() != fields[i] {
			perr = fmt.Errorf("it defines %s@%s", p.Name, p.Version.API())
		}
		if perr != nil {
			errs = append(errs, fmt.Errorf("dsat: recorded definition of %s: %w", fields[i], perr))
			continue
		}
		p.Draining = true
		ps = append(ps, p)
	}
	return ps, errors.Join(errs...)
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
