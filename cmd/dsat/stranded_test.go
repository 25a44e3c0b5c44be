package main

import (
	"bytes"
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
	"github.com/dsat-dev/dsat/workers"
)

// clientOf is a client of rdb loading the given pipeline files.
func clientOf(t *testing.T, rdb redis.UniversalClient, yamls ...string) *dsat.Client {
	t.Helper()
	var ps []*dsat.Pipeline
	for _, y := range yamls {
		p, err := dsat.ParsePipeline("p.yaml", []byte(y))
		if err != nil {
			t.Fatal(err)
		}
		ps = append(ps, p)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestDrainStranded: a process that loads pipeline p 2.0 (its file was
// edited from 1.0) and no longer loads pipeline gone (its file removed)
// loads, with a policy of both (removed and runs), both 1.0 versions from
// their record, draining: a
// satellite of its runs their unfinished tasks to their end, a submission
// to p goes to 2.0, one to gone is refused. As dsat worker it loads only
// p 1.0 and warns about gone. Nothing is logged with nothing stranded.
func TestDrainStranded(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		ctx := context.Background()
		rdb, _ := b.New(t)
		var logs bytes.Buffer
		old := clientOf(t, rdb, "name: p\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n",
			"name: gone\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
		if c := drainStranded(ctx, old, drainPolicy{removed: true, runs: true}, zerolog.New(&logs)); c != old || logs.Len() != 0 {
			t.Fatalf("with nothing stranded: a new client %v, logs %s", c != old, logs.String())
		}
		var ids []string
		for _, name := range []string{"p", "gone"} {
			sub, err := old.Submit(ctx, name, []byte(`{"n":1}`), dsat.SubmitOptions{})
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, sub.ID)
		}
		v2 := "name: p\nversion: 2.0.0\nsteps:\n  a: {handler: echo}\n"
		var wlogs bytes.Buffer
		w := drainStranded(ctx, clientOf(t, rdb, v2), drainPolicy{runs: true}, zerolog.New(&wlogs))
		if ps := w.Pipelines(); len(ps) != 2 || ps[0].Name != "p" || !ps[0].Draining || ps[1].Draining {
			t.Fatalf("a worker loads %+v, want p 1.0 draining and p 2.0", ps)
		}
		for _, want := range []string{`"level":"warn"`, `"pipeline":"gone"`, "loads no version of", `"level":"info"`, `"pipeline":"p"`} {
			if !strings.Contains(wlogs.String(), want) {
				t.Errorf("missing %s in the worker's %s", want, wlogs.String())
			}
		}
		c := drainStranded(ctx, clientOf(t, rdb, v2), drainPolicy{removed: true, runs: true}, zerolog.New(&logs))
		for _, want := range []string{`"pipeline":"p"`, `"pipeline":"gone"`, `"api":"1.0"`, `"unfinished":1`, "loaded a pipeline version from its record"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("missing %s in %s", want, logs.String())
			}
		}
		if n := len(c.Pipelines()); n != 3 {
			t.Fatalf("%d pipeline versions loaded, want 3", n)
		}
		sub, err := c.Submit(ctx, "p", []byte(`{}`), dsat.SubmitOptions{})
		if err != nil || !strings.HasSuffix(sub.ID, ".p.2.0.0") {
			t.Fatalf("submit to p: %+v %v, want a task of 2.0.0", sub, err)
		}
		if _, err := c.Submit(ctx, "gone", []byte(`{}`), dsat.SubmitOptions{}); !errors.Is(err, dsat.ErrPipelineNotFound) {
			t.Fatalf("submit to the removed pipeline: %v, want ErrPipelineNotFound", err)
		}
		sat, err := workers.New(c, builtinMux(0), workers.Config{ID: "s1", Logger: zerolog.Nop(), Block: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		if err := sat.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = sat.Stop(context.Background()) })
		for _, id := range append(ids, sub.ID) {
			waitSucceeded(t, c, id)
		}
	})
}

// TestDrainStrandedNeedsItsHandlers: a process that runs handlers only
// warns about a recorded version with a handler that is not built in;
// dsat serve, which runs none, loads it.
func TestDrainStrandedNeedsItsHandlers(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		ctx := context.Background()
		rdb, _ := b.New(t)
		old := clientOf(t, rdb, "name: mine\nversion: 1.0.0\nsteps:\n  a: {handler: custom}\n")
		drainStranded(ctx, old, drainPolicy{removed: true}, zerolog.Nop())
		if _, err := old.Submit(ctx, "mine", []byte(`{}`), dsat.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		other := "name: q\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n"
		var logs bytes.Buffer
		if c := drainStranded(ctx, clientOf(t, rdb, other), drainPolicy{removed: true, runs: true}, zerolog.New(&logs)); len(c.Pipelines()) != 1 {
			t.Fatalf("loaded %d pipeline versions without the handler, want 1", len(c.Pipelines()))
		}
		for _, want := range []string{`"level":"warn"`, `"pipeline":"mine"`, `"unfinished":1`, "cannot run from its record", "custom"} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("missing %s in %s", want, logs.String())
			}
		}
		if c := drainStranded(ctx, clientOf(t, rdb, other), drainPolicy{removed: true}, zerolog.Nop()); len(c.Pipelines()) != 2 {
			t.Fatalf("serve loaded %d pipeline versions, want 2", len(c.Pipelines()))
		}
	})
}

// waitSucceeded polls the task until it succeeded (fails on another final
// status, or after 20 s).
func waitSucceeded(t *testing.T, c *dsat.Client, id string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := c.Get(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status == dsat.StatusSucceeded {
			return
		}
		if dsat.Final(st.Status) || time.Now().After(deadline) {
			t.Fatalf("task %s: %s", id, st.Status)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestDrainStrandedRunsInThePipelinesFolder: a draining version's exec
// and process steps run in the pipelines folder, where its file was (a
// relative dir from there), not in the process's working directory; and
// the client that loads it still times its limiters by Redis's clock (a
// grant of rate permits is at Redis's time, not the process's).
func TestDrainStrandedRunsInThePipelinesFolder(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		ctx := context.Background()
		rdb, mini := b.New(t)
		v1 := "name: p\nversion: 1.0.0\nsteps:\n" +
			"  a: {handler: exec, with: {command: [sh, run.sh]}, next: [b]}\n" +
			"  b: {handler: process, with: {command: [sh, serve.sh], dir: sub}, next: [c]}\n" +
			"  c: {handler: echo, limits: {rate: 10/s}}\n"
		old := clientOf(t, rdb, v1)
		drainStranded(ctx, old, drainPolicy{runs: true}, zerolog.Nop())
		if _, err := old.Submit(ctx, "p", []byte(`{}`), dsat.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		folder := t.TempDir()
		v2, err := dsat.ParsePipeline("p.yaml", []byte(strings.Replace(v1, "1.0.0", "2.0.0", 1)))
		if err != nil {
			t.Fatal(err)
		}
		v2.File = filepath.Join(folder, "p.yaml")
		live, err := dsat.NewClient(rdb, dsat.Config{}, v2)
		if err != nil {
			t.Fatal(err)
		}
		c := drainStranded(ctx, live, drainPolicy{runs: true}, zerolog.Nop())
		ps := c.Pipelines()
		if len(ps) != 2 || !ps[0].Draining {
			t.Fatalf("loaded %+v, want p 1.0 draining", ps)
		}
		for step, want := range map[string]string{"a": folder, "b": filepath.Join(folder, "sub")} {
			if got := ps[0].Steps[step].With["dir"]; got != want {
				t.Errorf("draining step %s runs in %v, want %s", step, got, want)
			}
		}
		if mini == nil {
			return // a real Redis's clock cannot be moved
		}
		redisNow := time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)
		mini.SetTime(redisNow)
		budget, _, _, err := c.TakeRateBudget(ctx, ps[0], "c", "h1", 2, time.Second, nil)
		if err != nil {
			t.Fatal(err)
		}
		if d := budget.At.Sub(redisNow); d < -time.Minute || d > time.Minute {
			t.Fatalf("a grant at %s, want Redis's time %s", budget.At, redisNow)
		}
	})
}

// TestDrainStrandedNeedsItsChildren: a process that runs handlers leaves
// out (with a warning) a recorded version with a sub-pipeline step whose
// pipeline it does not load from a file (Submit refuses it: the step's
// tokens would fail instead of waiting), and loads it once it does.
func TestDrainStrandedNeedsItsChildren(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		ctx := context.Background()
		rdb, _ := b.New(t)
		kid := "name: kid\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n"
		parent := "name: parent\nversion: 1.0.0\nsteps:\n  a: {pipeline: kid}\n"
		old := clientOf(t, rdb, parent, kid)
		drainStranded(ctx, old, drainPolicy{runs: true}, zerolog.Nop())
		if _, err := old.Submit(ctx, "parent", []byte(`{}`), dsat.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
		v2 := strings.Replace(parent, "1.0.0", "2.0.0", 1)
		var logs bytes.Buffer
		if c := drainStranded(ctx, clientOf(t, rdb, v2), drainPolicy{runs: true}, zerolog.New(&logs)); len(c.Pipelines()) != 1 {
			t.Fatalf("loaded %d pipeline versions without kid, want 1", len(c.Pipelines()))
		}
		for _, want := range []string{`"level":"warn"`, `"pipeline":"parent"`, "cannot run from its record", `sub-pipeline step \"a\"`, `\"kid\"`} {
			if !strings.Contains(logs.String(), want) {
				t.Errorf("missing %s in %s", want, logs.String())
			}
		}
		if c := drainStranded(ctx, clientOf(t, rdb, v2, kid), drainPolicy{runs: true}, zerolog.Nop()); len(c.Pipelines()) != 3 {
			t.Fatalf("loaded %d pipeline versions with kid, want 3", len(c.Pipelines()))
		}
	})
}

// TestDrainPolicies: dsat serve loads every stranded version and runs no
// handler; dsat worker and dsat dev, which run handlers, load only other
// versions of the pipelines in their folder: a dsat dev on a Redis shared
// with another deployment never runs that deployment's pipelines.
func TestDrainPolicies(t *testing.T) {
	env := &cliEnv{getenv: func(string) string { return "" }}
	got := map[string]drainPolicy{
		"serve":  serveFlags(newFlagSet("serve", env), env).drain,
		"worker": workerFlags(newFlagSet("worker", env), env).drain,
		"dev":    devFlags(newFlagSet("dev", env), env).drain,
	}
	want := map[string]drainPolicy{"serve": {removed: true}, "worker": {runs: true}, "dev": {runs: true}}
	for name, w := range want {
		if got[name] != w {
			t.Errorf("dsat %s drains %+v, want %+v", name, got[name], w)
		}
	}
}
