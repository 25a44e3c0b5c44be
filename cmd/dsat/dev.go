package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/dsat-dev/dsat/examples"
	"github.com/dsat-dev/dsat/httpapi"
	"github.com/dsat-dev/dsat/workers"
)

func init() {
	register(&command{name: "dev", summary: "everything in one process on an embedded Redis: the zero-setup start",
		usage: "[--addr 127.0.0.1:8080] [--pipelines DIR] [--redis URL]",
		help: `Starts an embedded in-memory Redis (miniredis, on a loopback port it
prints, so redis-cli can look inside), the HTTP API and a satellite for
every step, loaded with the example pipelines (or --pipelines DIR). The
embedded Redis keeps nothing after exit; --redis URL uses a real one.

Examples:
  dsat dev
  dsat dev --addr 127.0.0.1:9000 --pipelines ./pipelines
  dsat dev --redis redis://127.0.0.1:6379`,
		run: runDev})
}

type devOpts struct {
	*serverOpts
	addr, token *string
}

func devFlags(fs *flag.FlagSet, env *cliEnv) *devOpts {
	return &devOpts{serverOpts: addServerFlags(drainPolicy{runs: true}, fs, env, false),
		addr:  envString(fs, env, "addr", "DSAT_ADDR", "127.0.0.1:8080", "address the HTTP API listens on"),
		token: envString(fs, env, "token", "DSAT_API_TOKEN", "", "comma-separated API tokens (empty: no auth)")}
}

func runDev(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("dev", env)
	o := devFlags(fs, env)
	if err := parse(fs, env, "dev", args); err != nil {
		return err
	}
	if _, err := newLogger(env.stderr, *o.logLevel, *o.logFormat); err != nil {
		return err // a bad flag fails before the embedded Redis starts
	}
	tokens, err := parseTokens(*o.token)
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "dsat-examples-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	redisAddr := *o.redis
	if redisAddr == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start the embedded Redis: %w", err)
		}
		defer mr.Close()
		redisAddr = "redis://" + mr.Addr()
	}
	srv, err := openServer(ctx, env, fs, o.serverOpts, redisAddr, func() (string, error) { return examples.WriteTo(tmp) })
	if err != nil {
		return err
	}
	defer srv.close()
	log, c, ps := srv.log, srv.c, srv.ps
	l, err := listen(*o.addr)
	if err != nil {
		return err
	}
	metrics := httpapi.NewMetrics(c)
	api := srv.newAPI(tokens, false, metrics, l)
	// Short heartbeats so the dashboard's load figures follow quickly.
	sat, err := srv.startSatellite(ctx, env, workers.Config{HeartbeatInterval: time.Second}, metrics)
	if err != nil {
		l.Close()
		return err
	}
	defer stopSatellite(sat, log, 30*time.Second)
	if err := upsertFileSchedules(ctx, c, ps, log); err != nil {
		return err
	}
	sched, err := startScheduler(ctx, c, log)
	if err != nil {
		return err
	}
	defer sched.Stop()
	url := baseURL(l)
	example := ps[0].Name
	for _, p := range ps {
		if p.Name == "textstats" {
			example = p.Name
		}
	}
	printDevBanner(env, url, redisAddr, *o.redis == "", example)
	return serveHTTP(ctx, l, api, api)
}

func printDevBanner(env *cliEnv, url, redisAddr string, embedded bool, pipeline string) {
	w := env.stdout
	fmt.Fprintf(w, "\ndsat %s dev is running.\n\n", Version)
	fmt.Fprintf(w, "  API and dashboard:  %s\n", url)
	fmt.Fprintf(w, "  Redis:              %s\n", redisAddr)
	if embedded {
		fmt.Fprintf(w, "                      (embedded and in memory: it keeps nothing after exit;\n")
		fmt.Fprintf(w, "                       look inside with redis-cli -u %s)\n", redisAddr)
	}
	fmt.Fprintf(w, "\nTry, in another terminal:\n\n")
	fmt.Fprintf(w, "  export DSAT_API=%s\n", url)
	fmt.Fprintf(w, "  id=$(go run ./cmd/dsat submit %s '{\"kind\":\"urgent\",\"text\":\"disk full\"}')\n", pipeline)
	fmt.Fprintf(w, "  go run ./cmd/dsat tail $id\n")
	fmt.Fprintf(w, "  go run ./cmd/dsat status $id\n\n")
	fmt.Fprintf(w, "or with curl:\n\n")
	fmt.Fprintf(w, "  curl -s -X POST -H 'Content-Type: application/json' -d '{\"kind\":\"urgent\"}' %s/v1/pipelines/%s/tasks\n\n", url, pipeline)
	fmt.Fprintf(w, "Press Ctrl+C to stop.\n\n")
}
