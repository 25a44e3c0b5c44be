package dsat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Defaults of Config.
const (
	DefaultFirehoseMaxLen = 100000
	DefaultRetention      = 7 * 24 * time.Hour
	DefaultIdempotencyTTL = 24 * time.Hour
)

// Config tunes a Client. The zero value is usable.
type Config struct {
	// Prefix is the first segment of every key (default "dsat").
	Prefix string
	// FirehoseMaxLen caps each partition's event firehose (approximately,
	// MAXLEN ~). Default 100000.
	FirehoseMaxLen int64
	// Retention is how long a finished task's state and events are kept.
	// Default 7 days.
	Retention time.Duration
	// IdempotencyTTL is how long an idempotency key is remembered.
	// Default 24 hours.
	IdempotencyTTL time.Duration
	// MaxPayload is the largest payload or output in bytes. Default 1 MiB.
	MaxPayload int
	// Now returns the current time; tests inject a clock. Default time.Now.
	Now func() time.Time
}

func (c Config) withDefaults() Config {
	if c.Prefix == "" {
		c.Prefix = DefaultPrefix
	}
	if c.FirehoseMaxLen <= 0 {
		c.FirehoseMaxLen = DefaultFirehoseMaxLen
	}
	if c.Retention <= 0 {
		c.Retention = DefaultRetention
	}
	if c.IdempotencyTTL <= 0 {
		c.IdempotencyTTL = DefaultIdempotencyTTL
	}
	if c.MaxPayload <= 0 {
		c.MaxPayload = DefaultMaxPayload
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	return c
}

func (c Config) validate() error {
	if !ValidName(c.Prefix) {
		return fmt.Errorf("dsat: config: prefix %q must be 1 to 64 characters of a-z, 0-9, '_' or '-'", c.Prefix)
	}
	return nil
}

// Client is the Go API of dsat: submit tasks, read their state and events,
// cancel and retry them, list dead letters. The satellite runtime uses its
// engine methods (Begin, Complete, Fail, Promote). It is safe for concurrent
// use. It never closes the Redis client it was given.
type Client struct {
	rdb    redis.UniversalClient
	cfg    Config
	keys   Keys
	latest map[string]*Pipeline // by name: the newest version, used by Submit
	byAPI  map[string]*compiled // by "name@X.Y"
	rr     atomic.Uint64
	// entryBacklogs caches the entry step backlog of pipelines whose entry
	// has a max_backlog (checkEntryBacklog).
	entryBacklogs backlogCache
	// historyChunk, when set (tests), replaces historyChunk.
	historyChunk int64
	// taskPage, when set (tests), replaces taskPage.
	taskPage int64
	// prio: which pipelines use priorities (priority.go).
	prio priorityState
	// serverClock: no clock was injected, so the limiters use Redis's
	// clock (limits.lua): a grant is then never timed before the end of
	// the token whose permit it took.
	serverClock bool
}

// compiled is a pipeline with what the scripts need precomputed.
type compiled struct {
	p        *Pipeline
	joins    []string            // join steps, topological order
	routeArg map[string][]any    // step -> complete.lua's ARGV[7..]
	streams  map[string][]string // step -> step names behind complete.lua's KEYS[3..]
	allSteps []string            // every step, declaration order
	// failMapJoin: fail.lua's extra arguments per step, for a pipeline
	// with a map or a join policy (nil for every other).
	failMapJoin map[string]*mapJoinCall
}

// NewClient returns a Client for the given pipelines. Several versions of a
// pipeline may be given; Submit uses the newest (that is not Draining),
// and tasks of every given API version can be driven.
func NewClient(rdb redis.UniversalClient, cfg Config, pipelines ...*Pipeline) (*Client, error) {
	serverClock := cfg.Now == nil
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	c := &Client{rdb: rdb, cfg: cfg, keys: NewKeys(cfg.Prefix), latest: map[string]*Pipeline{}, byAPI: map[string]*compiled{}, serverClock: serverClock}
	for _, p := range pipelines {
		api := p.Name + "@" + p.Version.API()
		if _, dup := c.byAPI[api]; dup {
			return nil, fmt.Errorf("dsat: pipeline %s version %s given twice", p.Name, p.Version.API())
		}
		c.byAPI[api] = compile(p)
		// The newest version loaded from a file, else the newest draining.
		if cur, ok := c.latest[p.Name]; !ok || cur.Draining && !p.Draining ||
			cur.Draining == p.Draining && p.Version.Compare(cur.Version) > 0 {
			c.latest[p.Name] = p
		}
	}
	return c, nil
}

// Keys returns the key builder the client uses.
func (c *Client) Keys() Keys { return c.keys }

// Redis returns the Redis client given to NewClient.
func (c *Client) Redis() redis.UniversalClient { return c.rdb }

// Config returns the client's configuration with defaults applied. Its Now
// is set: a client built from it (NewClient) has its clock injected, and
// times its limiters by it instead of Redis's clock.
func (c *Client) Config() Config { return c.cfg }

// Pipeline returns the newest loaded version of the named pipeline (a
// Draining one only when no other is loaded).
func (c *Client) Pipeline(name string) (*Pipeline, error) {
	p, ok := c.latest[name]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrPipelineNotFound, name)
	}
	return p, nil
}

// Pipelines returns every loaded pipeline version, sorted by name and
// version.
func (c *Client) Pipelines() []*Pipeline {
	out := make([]*Pipeline, 0, len(c.byAPI))
	for _, cp := range c.byAPI {
		out = append(out, cp.p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Name != out[j].Name {
			return out[i].Name < out[j].Name
		}
		return out[i].Version.Compare(out[j].Version) < 0
	})
	return out
}

// pipelineFor returns the compiled pipeline of a partition.
func (c *Client) pipelineFor(p Partition) (*compiled, error) {
	cp, ok := c.byAPI[p.Pipeline+"@"+p.API]
	if !ok {
		return nil, fmt.Errorf("%w: %s version %s is not loaded", ErrPipelineNotFound, p.Pipeline, p.API)
	}
	return cp, nil
}

func compile(p *Pipeline) *compiled {
	cp := &compiled{p: p, routeArg: map[string][]any{}, streams: map[string][]string{}, allSteps: p.Order}
	for _, s := range topoOrder(p) {
		if p.Steps[s].Join {
			cp.joins = append(cp.joins, s)
		}
	}
	for _, name := range p.Order {
		s := p.Steps[name]
		kind, by, routes := "next", "", ""
		if s.IsSwitch() {
			b, err := json.Marshal(s.Routes)
			if err != nil {
				panic("dsat: routes: " + err.Error())
			}
			kind, by, routes = "switch", s.RouteBy, string(b)
		}
		targets := s.Targets()
		args := []any{kind, by, routes}
		if margs, release, ok := mapRouteArg(p, s); ok {
			args = margs
			if release != "" {
				targets = append(append([]string{}, targets...), release) // complete.lua: the last "target" is the release step
			}
		}
		args = append(args, len(cp.joins), len(targets))
		streams := append([]string{}, cp.joins...)
		for _, j := range cp.joins {
			args = append(args, joinSpec(p, j))
		}
		for _, t := range targets {
			args = append(args, t)
			streams = append(streams, t)
		}
		cp.routeArg[name] = args
		cp.streams[name] = streams
	}
	cp.withOnFailure()
	cp.failMapJoin = failMapJoinCalls(p, cp.joins)
	return cp
}

// topoOrder returns the steps in a topological order (entry first,
// declaration order among equals).
func topoOrder(p *Pipeline) []string {
	indeg := map[string]int{}
	for _, n := range p.Order {
		for _, t := range p.Steps[n].Targets() {
			indeg[t]++
		}
	}
	var out, ready []string
	for _, n := range p.Order {
		if indeg[n] == 0 {
			ready = append(ready, n)
		}
	}
	for len(ready) > 0 {
		n := ready[0]
		ready = ready[1:]
		out = append(out, n)
		for _, t := range p.Steps[n].Targets() {
			if indeg[t]--; indeg[t] == 0 {
				ready = append(ready, t)
			}
		}
	}
	return out
}

// runScript runs s and returns its reply as a list (an integer reply
// becomes a one-element list).
func (c *Client) runScript(ctx context.Context, s *redis.Script, keys []string, args ...any) ([]any, error) {
	v, err := s.Run(ctx, c.rdb, keys, args...).Result()
	if err != nil {
		return nil, fmt.Errorf("dsat: script: %w", err)
	}
	switch r := v.(type) {
	case int64:
		return []any{r}, nil
	case []any:
		if len(r) == 0 {
			return nil, errors.New("dsat: script returned an empty list")
		}
		return r, nil
	}
	return nil, fmt.Errorf("dsat: script returned %T", v)
}

// replyCode reads element 0 of a script reply as its return code.
func replyCode(r []any) int64 {
	n, _ := r[0].(int64)
	return n
}

func replyString(r []any, i int) string {
	if i >= len(r) {
		return ""
	}
	s, _ := r[i].(string)
	return s
}

func ms(t time.Time) string { return fmt.Sprint(t.UnixMilli()) }
