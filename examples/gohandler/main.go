// Command gohandler is a worker binary of your own: it registers a Go
// handler, wordcount, beside dsat's built-in ones (echo, sleep, fail,
// exec), loads the pipelines of a folder and runs a satellite for their
// steps until SIGINT or SIGTERM.
//
// The stock dsat binary does not know wordcount, so this binary is the
// worker for the pipeline (gowords.yaml), and dsat serve and dsat validate
// are told about the handler with --handlers:
//
//	go run ./examples/gohandler --redis redis://127.0.0.1:6379 --pipelines examples/gohandler
//	dsat serve --redis redis://127.0.0.1:6379 --pipelines examples/gohandler --handlers wordcount
//	dsat submit gowords '{"text":"the quick brown fox"}'
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/workers"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "gohandler:", err)
		os.Exit(1)
	}
}

// wordcount counts the words of {"text": "..."}: its output is {"words": N}.
func wordcount(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
	zerolog.Ctx(ctx).Info().Msg("counting") // logger with task, step and satellite
	var in struct{ Text string }
	if err := json.Unmarshal(t.Payload, &in); err != nil {
		return dsat.Result{}, fmt.Errorf("%w: bad input: %v", workers.SkipRetry, err)
	}
	out, err := json.Marshal(map[string]int{"words": len(strings.Fields(in.Text))})
	if err != nil {
		return dsat.Result{}, err
	}
	return dsat.Result{Output: out}, nil // Result.Route would pick a switch case
}

// newMux registers the handlers this binary runs: dsat's built-ins and
// wordcount. maxOutput bounds exec's output (0: no bound).
func newMux(maxOutput int) *workers.Mux {
	mux := workers.NewMux()
	workers.RegisterBuiltins(mux, maxOutput) // echo, sleep, fail, exec, process
	mux.HandleFunc("wordcount", wordcount)
	return mux
}

// runSatellite runs a satellite for every step of the client's pipelines
// until ctx ends, then stops it gracefully: running handlers may finish
// (Config.ShutdownTimeout, 30 s by default), unfinished tokens stay
// pending for other satellites to reclaim.
func runSatellite(ctx context.Context, c *dsat.Client, log zerolog.Logger) error {
	mux := newMux(c.Config().MaxPayload)
	sat, err := workers.New(c, mux, workers.Config{Logger: log})
	if err != nil {
		return err // a step whose handler is not registered, or a bad with:
	}
	if err := sat.Start(ctx); err != nil {
		return err
	}
	<-ctx.Done()
	log.Info().Msg("stopping: running handlers may finish")
	return sat.Stop(context.Background())
}

// run parses the flags, loads the pipelines, connects to Redis and runs
// the satellite until ctx ends.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("gohandler", flag.ContinueOnError)
	fs.SetOutput(stderr)
	redisURL := fs.String("redis", envOr("DSAT_REDIS_URL", "redis://127.0.0.1:6379"), "Redis URL (or DSAT_REDIS_URL)")
	dir := fs.String("pipelines", envOr("DSAT_PIPELINES", "examples/gohandler"), "folder of pipeline YAML files (or DSAT_PIPELINES)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := zerolog.New(zerolog.ConsoleWriter{Out: stderr}).With().Timestamp().Logger()

	ps, err := dsat.LoadPipelineDir(*dir)
	if err != nil {
		return err
	}
	workers.ResolveExecDirs(ps, "exec", "process") // exec and process steps run in their YAML's folder
	opt, err := redis.ParseURL(*redisURL)
	if err != nil {
		return fmt.Errorf("bad --redis %q: %w", *redisURL, err)
	}
	rdb := redis.NewClient(opt)
	defer rdb.Close()
	c, err := dsat.NewClient(rdb, dsat.Config{}, ps...)
	if err != nil {
		return err
	}
	return runSatellite(ctx, c, log)
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
