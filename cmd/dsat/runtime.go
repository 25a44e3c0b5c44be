package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/httpapi"
	"github.com/dsat-dev/dsat/tracing"
	"github.com/dsat-dev/dsat/workers"
)

// server is what dev, serve and worker share once their flags are parsed:
// a logger, the pipelines, a Redis client and a dsat client.
type server struct {
	log zerolog.Logger
	ps  []*dsat.Pipeline
	rdb redis.UniversalClient
	c   *dsat.Client
	// tp is the OpenTelemetry tracer provider (OTEL_* variables); nil when
	// tracing is off.
	tp *sdktrace.TracerProvider
}

// openServer checks there are no stray arguments, builds the logger, loads
// the pipelines (examplesDir supplies them when --pipelines is empty; nil
// makes --pipelines required), connects to Redis (redisURL) and, for real
// deployments, refuses a Redis that evicts keys. Close it with close.
func openServer(ctx context.Context, env *cliEnv, fs *flag.FlagSet, o *serverOpts, redisURL string, examplesDir func() (string, error)) (*server, error) {
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q", fs.Arg(0))
	}
	log, err := newLogger(env.stderr, *o.logLevel, *o.logFormat)
	if err != nil {
		return nil, err
	}
	ps, err := loadPipelines(*o.pipelines, examplesDir)
	if err != nil {
		return nil, err
	}
	rdb, err := connectRedis(ctx, redisURL, 4*len(ps))
	if err != nil {
		return nil, err
	}
	if examplesDir == nil {
		if warn, err := checkEviction(ctx, rdb); err != nil {
			rdb.Close()
			return nil, err
		} else if warn != "" {
			log.Warn().Msg(warn)
		}
	}
	c, err := newClient(rdb, *o.prefix, ps)
	if err != nil {
		rdb.Close()
		return nil, err
	}
	c = drainStranded(ctx, c, o.drain, log)
	tp, err := tracing.FromEnv(ctx, "dsat")
	if err != nil {
		rdb.Close()
		return nil, err
	}
	if tp != nil {
		log.Info().Msg("OpenTelemetry tracing on (OTEL_EXPORTER_OTLP_ENDPOINT)")
	}
	return &server{log: log, ps: ps, rdb: rdb, c: c, tp: tp}, nil
}

// drainPolicy says which stranded pipeline versions a process loads,
// draining (drainStranded).
type drainPolicy struct {
	// removed: also the versions of pipelines the process loads no
	// version of, their file removed (serve: the API knows every
	// pipeline, and runs no handler); without it, only other versions of
	// the pipelines it loads (worker, dev: workers with different folders
	// under one prefix must not run each other's pipelines, nor a dsat dev
	// run on a shared Redis the pipelines of another deployment).
	removed bool
	// runs: the process runs handlers: a version with a handler that is
	// not built in is left out (worker, dev).
	runs bool
}

// drainStranded records the pipeline versions this process loads, then
// looks for recorded versions it does not load that have unfinished tasks
// (their file left the pipelines folder, or was edited to a new X.Y,
// before they ended). It loads those that pol allows from their recorded
// definition, marked Draining, so that their tasks run to their end (and
// can be searched and cancelled) while Submit refuses them, and warns
// about the others. It returns the client to use: c, or a new one that
// loads the draining versions too. A Redis error here is only a warning:
// the process runs as before.
func drainStranded(ctx context.Context, c *dsat.Client, pol drainPolicy, log zerolog.Logger) *dsat.Client {
	if err := c.RecordVersions(ctx); err != nil {
		log.Warn().Err(err).Msg("could not record the loaded pipeline versions")
		return c
	}
	vs, err := c.StrandedVersions(ctx)
	if err != nil {
		log.Warn().Err(err).Msg("could not look for tasks of pipeline versions not loaded")
		return c
	}
	var want []dsat.StrandedVersion
	for _, v := range vs {
		if _, err := c.Pipeline(v.Pipeline); err == nil || pol.removed {
			want = append(want, v)
			continue
		}
		log.Warn().Str("pipeline", v.Pipeline).Str("api", v.API).Int64("unfinished", v.Unfinished).
			Msg("unfinished tasks of a pipeline this process loads no version of: it leaves them to the workers that load it (dsat serve loads its version from the record to enforce their deadlines and let them be cancelled; README: Upgrading or removing a pipeline)")
	}
	ps, err := c.DrainingPipelines(ctx, want)
	if err != nil {
		log.Warn().Err(err).Msg("pipeline versions with unfinished tasks that this process cannot load from their record: nothing runs those tasks until the version's file is back in the pipelines folder (README: Upgrading or removing a pipeline)")
	}
	unfinished := map[string]int64{}
	for _, v := range vs {
		unfinished[v.Pipeline+"@"+v.API] = v.Unfinished
	}
	all, loaded := c.Pipelines(), 0
	// The pipelines folder (one, for every file loaded): a draining
	// version's exec and process steps run there, next to where its file
	// was, not in the process's working directory.
	dir := ""
	for _, p := range all {
		if p.File != "" {
			dir = filepath.Dir(p.File)
			break
		}
	}
	for _, p := range ps {
		api := p.Version.API()
		if pol.runs {
			err := checkHandlers([]*dsat.Pipeline{p}, "")
			if err == nil {
				err = childrenLoaded(c, p)
			}
			if err != nil {
				log.Warn().Err(err).Str("pipeline", p.Name).Str("api", api).Int64("unfinished", unfinished[p.Name+"@"+api]).
					Msg("unfinished tasks of a pipeline version this process does not load, and cannot run from its record (a handler not built in, or a sub-pipeline it does not load from a file): left to a process that has it, or to the version's file put back (README: Upgrading or removing a pipeline)")
				continue
			}
			if dir != "" {
				workers.ResolveExecDirsIn(dir, []*dsat.Pipeline{p}, "exec", "process")
			}
		}
		all = append(all, p)
		loaded++
		log.Info().Str("pipeline", p.Name).Str("api", api).Int64("unfinished", unfinished[p.Name+"@"+api]).
			Msg("loaded a pipeline version from its record to finish its unfinished tasks (draining: no new submission)")
	}
	if loaded == 0 {
		return c
	}
	// newClient, not c.Config(): that has a clock filled in, and a client
	// given a clock times its limiters by it instead of Redis's.
	dc, err := newClient(c.Redis(), c.Config().Prefix, all)
	if err != nil {
		log.Warn().Err(err).Msg("could not load the draining pipeline versions")
		return c
	}
	return dc
}

// childrenLoaded checks that c loads, from a file, the pipeline of each
// sub-pipeline step of p: Submit refuses any other, so the step's tokens
// would fail where they could wait for the file to come back.
func childrenLoaded(c *dsat.Client, p *dsat.Pipeline) error {
	for _, name := range p.Order {
		if child := p.Steps[name].Pipeline; child != "" {
			if _, err := c.Pipeline(child); err != nil {
				return fmt.Errorf("pipeline %s: sub-pipeline step %q: %w", p.Name, name, err)
			}
		}
	}
	return nil
}

// close flushes the spans (up to 5s) and closes the Redis client.
func (s *server) close() {
	if s.tp != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if err := s.tp.Shutdown(ctx); err != nil {
			s.log.Warn().Err(err).Msg("flush OpenTelemetry spans")
		}
		cancel()
	}
	_ = s.rdb.Close()
}

// tracerProvider is s.tp as an interface: nil (not a typed nil) when
// tracing is off.
func (s *server) tracerProvider() trace.TracerProvider {
	if s.tp == nil {
		return nil
	}
	return s.tp
}

// startSatellite runs a satellite for the pipelines' steps (or a subset).
func (s *server) startSatellite(ctx context.Context, env *cliEnv, cfg workers.Config, m *httpapi.Metrics) (*workers.Satellite, error) {
	c, log := s.c, s.log
	mux := builtinMux(c.Config().MaxPayload)
	cfg.Logger = log
	cfg.Version = Version
	cfg.TracerProvider = s.tracerProvider()
	if m != nil {
		cfg.OnResult = m.ObserveStep
	}
	installTestHooks(env, log, &cfg)
	sat, err := workers.New(c, mux, cfg)
	if err != nil {
		return nil, err
	}
	if err := sat.Start(ctx); err != nil {
		return nil, err
	}
	return sat, nil
}

// listen opens addr; ":0" style ports pick a free one.
func listen(addr string) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %v; pick another --addr", addr, err)
	}
	return l, nil
}

// baseURL is the http:// URL of a listener, for messages.
func baseURL(l net.Listener) string {
	host, port, _ := net.SplitHostPort(l.Addr().String())
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// parseTokens splits --token (comma-separated, for rotation). A value
// that holds no token at all (" , ") is refused: it would turn auth off
// while the operator meant it on.
func parseTokens(tokens string) ([]string, error) {
	var ts []string
	for _, t := range strings.Split(tokens, ",") {
		if t = strings.TrimSpace(t); t != "" {
			ts = append(ts, t)
		}
	}
	if tokens != "" && len(ts) == 0 {
		return nil, usagef("--token (or DSAT_API_TOKEN) %q holds no token; give one or more comma-separated tokens, or leave it unset to run without auth", tokens)
	}
	return ts, nil
}

// newAPI builds the HTTP API for the listener l.
func (s *server) newAPI(tokens []string, metricsAuth bool, m *httpapi.Metrics, l net.Listener) *httpapi.API {
	return httpapi.NewRouter(httpapi.Config{Client: s.c, Logger: s.log, Tokens: tokens, MetricsAuth: metricsAuth, Metrics: m,
		Static: dashboard(), Loopback: isLoopback(l), TracerProvider: s.tracerProvider()})
}

// isLoopback says l accepts connections from this machine only.
func isLoopback(l net.Listener) bool {
	a, ok := l.Addr().(*net.TCPAddr)
	return ok && a.IP.IsLoopback()
}

// serveHTTP serves h on l until ctx ends.
func serveHTTP(ctx context.Context, l net.Listener, h http.Handler, api *httpapi.API) error {
	srv := httpapi.NewServer(l.Addr().String(), h)
	err := httpapi.Serve(ctx, srv, l, api, 10*time.Second)
	if err == http.ErrServerClosed {
		return nil
	}
	return err
}

func newClient(rdb redis.UniversalClient, prefix string, ps []*dsat.Pipeline) (*dsat.Client, error) {
	return dsat.NewClient(rdb, dsat.Config{Prefix: prefix}, ps...)
}

// stopSatellite stops a satellite with a fresh context (the run context is
// already cancelled at shutdown), bounded by the shutdown timeout and a
// margin: a handler that ignores cancellation cannot hold the process.
func stopSatellite(s *workers.Satellite, log zerolog.Logger, timeout time.Duration) {
	if s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout+5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		log.Warn().Err(err).Msg("satellite stop")
	}
}
