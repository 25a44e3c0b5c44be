package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/dsat-dev/dsat/httpapi"
	"github.com/dsat-dev/dsat/workers"
)

func init() {
	register(&command{name: "serve", summary: "run the HTTP API (and the dashboard)",
		usage: "--redis URL --pipelines DIR [--addr :8080] [--token T]",
		help: `Serves the HTTP API on --addr for the pipelines in --pipelines, and
cancels tasks past their ?deadline= and times out tokens past their step's
queue_timeout (as the workers do), so both hold while no worker runs. At start-up
it checks that Redis does not evict keys (maxmemory-policy must not be
allkeys-* or volatile-*: an evicted stream loses work), and puts the
schedules the pipeline files declare (schedules:). It fires due schedules
too, as every worker does (one task per slot).

Examples:
  dsat serve --redis redis://127.0.0.1:6379 --pipelines ./pipelines
  DSAT_REDIS_URL=rediss://user:secret@redis.internal:6380 DSAT_PIPELINES=/etc/dsat dsat serve
  dsat serve --redis 10.0.0.1:7000,10.0.0.2:7000,10.0.0.3:7000 --pipelines ./pipelines   # a Redis Cluster`,
		run: runServe})
}

type serveOpts struct {
	*serverOpts
	addr, token, handlers *string
	metricsAuth           *bool
}

func serveFlags(fs *flag.FlagSet, env *cliEnv) *serveOpts {
	return &serveOpts{serverOpts: addServerFlags(drainPolicy{removed: true}, fs, env, true),
		addr:        envString(fs, env, "addr", "DSAT_ADDR", ":8080", "address to listen on"),
		token:       envString(fs, env, "token", "DSAT_API_TOKEN", "", "comma-separated API tokens (empty: no auth)"),
		metricsAuth: fs.Bool("metrics-auth", false, "require the API token on /metrics too"),
		handlers:    handlersFlag(fs, env)}
}

func runServe(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("serve", env)
	o := serveFlags(fs, env)
	if err := parse(fs, env, "serve", args); err != nil {
		return err
	}
	tokens, err := parseTokens(*o.token)
	if err != nil {
		return err
	}
	srv, err := openServer(ctx, env, fs, o.serverOpts, *o.redis, nil)
	if err != nil {
		return err
	}
	defer srv.close()
	log, c, ps := srv.log, srv.c, srv.ps
	if err := checkHandlers(ps, *o.handlers); err != nil {
		// Tasks of a step no worker can run would queue forever.
		return fmt.Errorf("%w\n(a handler of your own worker binary: name it in --handlers)", err)
	}
	if err := upsertFileSchedules(ctx, c, ps, log); err != nil {
		return err
	}
	l, err := listen(*o.addr)
	if err != nil {
		return err
	}
	sched, err := startScheduler(ctx, c, log)
	if err != nil {
		return err
	}
	defer sched.Stop()
	api := srv.newAPI(tokens, *o.metricsAuth, httpapi.NewMetrics(c), l)
	// Deadlines and queue timeouts hold even while no worker runs a step.
	keeperCtx, stopKeeper := context.WithCancel(ctx)
	kept := make(chan struct{})
	go func() {
		defer close(kept)
		workers.NewTimeKeeper(c, log, 0).Run(keeperCtx)
	}()
	defer func() { stopKeeper(); <-kept }()
	log.Info().Str("url", baseURL(l)).Int("pipelines", len(ps)).Msg("dsat serve listening")
	return serveHTTP(ctx, l, api, api)
}
