//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// loadYAML is the pipeline every fault runs under: a fan-out, a switch and
// a join. Each task makes 5 handler runs (intake, work, route, pa or pb,
// merge).
func loadYAML(partitions int) string {
	return fmt.Sprintf(`
name: load
version: 1.0.0
partitions: %d
steps:
  intake: {handler: echo, next: [work, route], concurrency: {min: 4, max: 16}}
  work:   {handler: sleep, with: {ms: 3}, next: [merge], timeout: 2s, concurrency: {min: 8, max: 32}}
  route:
    handler: echo
    route_by: kind
    routes: {a: [pa], default: [pb]}
    concurrency: {min: 4, max: 16}
  pa:     {handler: echo, next: [merge], concurrency: {min: 4, max: 16}}
  pb:     {handler: echo, next: [merge], concurrency: {min: 4, max: 16}}
  merge:  {handler: echo, join: true, concurrency: {min: 4, max: 16}}
`, partitions)
}

// rig is one test's system: Redis, pipelines, dsat processes, a client.
type rig struct {
	t       *testing.T
	ctx     context.Context
	rdb     redis.UniversalClient
	c       *dsat.Client
	p       *dsat.Pipeline
	dir     string
	redis   string // URL for dsat
	workers []*dsatProc
	ids     []string
}

func newRig(t *testing.T, rdb redis.UniversalClient, redisURL, yaml string) *rig {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "load.yaml"), []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := dsat.LoadPipelineFile(filepath.Join(dir, "load.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	return &rig{t: t, ctx: context.Background(), rdb: rdb, c: c, p: p, dir: dir, redis: redisURL}
}

// standalone starts redis-server with AOF and the given fsync policy.
func standalone(t *testing.T, fsync string) (*redistest.Server, *redis.Client) {
	t.Helper()
	s := redistest.Start(t, "appendonly yes", "appendfsync "+fsync, "enable-debug-command local")
	return s, s.Client(t)
}

// worker starts a dsat worker with test timings.
func (r *rig) worker(name string, env ...string) *dsatProc {
	r.t.Helper()
	w := startDsat(r.t, name, env, "worker", "--redis", r.redis, "--pipelines", r.dir, "--id", name,
		"--visibility-timeout", "3s", "--shutdown-timeout", "2s", "--log-format", "json", "--log-level", "warn")
	r.workers = append(r.workers, w)
	return w
}

// serve starts the API and returns its URL.
func (r *rig) serve() (*dsatProc, string) {
	r.t.Helper()
	s := startDsat(r.t, "serve", nil, "serve", "--redis", r.redis, "--pipelines", r.dir, "--addr", "127.0.0.1:0",
		"--log-format", "json", "--log-level", "info")
	return s, s.waitURL(r.t)
}

// submit sends n tasks through the client in batches.
func (r *rig) submit(n int) {
	r.t.Helper()
	for len(r.ids) < n {
		var batch [][]byte
		for i := 0; i < min(200, n-len(r.ids)); i++ {
			kind := "a"
			if (len(r.ids)+i)%3 == 0 {
				kind = "b"
			}
			batch = append(batch, []byte(fmt.Sprintf(`{"kind":%q,"i":%d}`, kind, len(r.ids)+i)))
		}
		ids, err := r.c.SubmitBatch(r.ctx, r.p.Name, batch)
		if err != nil {
			r.t.Fatalf("submit: %v", err)
		}
		r.ids = append(r.ids, ids...)
	}
}

// waitFinal waits until every task is final (or the limit passes).
func (r *rig) waitFinal(limit time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(limit)
	for {
		pending := 0
		for i := 0; i < len(r.ids); i += 500 {
			chunk := r.ids[i:min(i+500, len(r.ids))]
			cmds := make([]*redis.StringCmd, len(chunk))
			_, _ = r.rdb.Pipelined(r.ctx, func(p redis.Pipeliner) error {
				for j, id := range chunk {
					tid, _ := dsat.ParseTaskID(id)
					cmds[j] = p.HGet(r.ctx, r.c.Keys().Task(tid.Partition, id), "status")
				}
				return nil
			})
			for _, c := range cmds {
				if !dsat.Final(c.Val()) {
					pending++
				}
			}
		}
		if pending == 0 {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%d of %d tasks not final after %s%s", pending, len(r.ids), limit, r.logTails())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *rig) logTails() string {
	var b strings.Builder
	for _, w := range r.workers {
		data, _ := os.ReadFile(w.log)
		s := string(data)
		if len(s) > 1500 {
			s = s[len(s)-1500:]
		}
		fmt.Fprintf(&b, "\n--- %s log tail:\n%s", w.name, s)
	}
	return b.String()
}
