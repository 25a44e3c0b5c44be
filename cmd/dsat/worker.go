package main

import (
	"context"
	"encoding/json"
	"flag"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/httpapi"
	"github.com/dsat-dev/dsat/workers"
)

func init() {
	register(&command{name: "worker", summary: "run a satellite: worker pools for the pipelines' steps",
		usage: "--redis URL --pipelines DIR [--steps p/s,...] [--addr :9090]",
		help: `Runs a satellite: a pool of workers for each step of the pipelines in
--pipelines (or only --steps), sharing each step's stream with the other
satellites through its consumer group. It reclaims tokens of dead
satellites, promotes due retries, scales its pools and reports itself, and
fires due schedules (as every serve does: one task per slot).
SIGINT/SIGTERM stop it gracefully: running handlers get --shutdown-timeout
to finish; unfinished tokens stay pending for other satellites.

With --addr it also serves /healthz and /metrics.

Examples:
  dsat worker --redis redis://127.0.0.1:6379 --pipelines ./pipelines
  dsat worker --redis redis://127.0.0.1:6379 --pipelines ./pipelines --steps textstats/enrich,wordcount`,
		run: runWorker})
}

type workerOpts struct {
	*serverOpts
	steps, addr, id *string
	shutdown, vis   *time.Duration
}

func workerFlags(fs *flag.FlagSet, env *cliEnv) *workerOpts {
	return &workerOpts{serverOpts: addServerFlags(drainPolicy{runs: true}, fs, env, true),
		steps:    envString(fs, env, "steps", "DSAT_STEPS", "", "serve only these steps: pipeline/step or pipeline, comma-separated (default: all)"),
		addr:     envString(fs, env, "addr", "DSAT_ADDR", "", "serve /healthz and /metrics on this address (default: none)"),
		id:       envString(fs, env, "id", "DSAT_SATELLITE_ID", "", "satellite id (default: host-pid-random)"),
		shutdown: fs.Duration("shutdown-timeout", 30*time.Second, "how long running handlers may finish at shutdown"),
		vis:      fs.Duration("visibility-timeout", 0, "reclaim tokens idle this long (default: each step's timeout + 30s)")}
}

func runWorker(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("worker", env)
	o := workerFlags(fs, env)
	if err := parse(fs, env, "worker", args); err != nil {
		return err
	}
	srv, err := openServer(ctx, env, fs, o.serverOpts, *o.redis, nil)
	if err != nil {
		return err
	}
	defer srv.close()
	log, c := srv.log, srv.c
	var steps []string
	for _, s := range strings.Split(*o.steps, ",") {
		if s = strings.TrimSpace(s); s != "" {
			steps = append(steps, s)
		}
	}
	metrics := httpapi.NewMetrics(c)
	sat, err := srv.startSatellite(ctx, env, workers.Config{ID: *o.id, Steps: steps, ShutdownTimeout: *o.shutdown, VisibilityTimeout: *o.vis}, metrics)
	if err != nil {
		return err
	}
	defer stopSatellite(sat, log, *o.shutdown)
	sched, err := startScheduler(ctx, c, log)
	if err != nil {
		return err
	}
	defer sched.Stop()
	if *o.addr == "" {
		<-ctx.Done()
		return nil
	}
	l, err := listen(*o.addr)
	if err != nil {
		return err
	}
	log.Info().Str("url", baseURL(l)).Msg("worker health and metrics listening")
	return serveHTTP(ctx, l, workerMux(c, metrics), nil)
}

// workerMux serves a worker's probes and metrics: /healthz (the process
// is up), /readyz (Redis answers and every script is loaded: 503
// otherwise) and /metrics.
func workerMux(c *dsat.Client, metrics *httpapi.Metrics) *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte(`{"status":"ok"}`)) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		w.Header().Set("Content-Type", "application/json")
		if err := c.Ready(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			b, _ := json.Marshal(map[string]string{"status": "not ready", "detail": err.Error()})
			_, _ = w.Write(b)
			return
		}
		_, _ = w.Write([]byte(`{"status":"ready"}`))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics.Registry, promhttp.HandlerOpts{}))
	return mux
}
