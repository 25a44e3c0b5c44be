package httpapi

import (
	"crypto/sha256"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
	"github.com/rs/zerolog/hlog"
	"go.opentelemetry.io/otel/trace"

	"github.com/dsat-dev/dsat/dsat"
)

// Config configures the API. Client is required; everything else has a
// default.
type Config struct {
	Client *dsat.Client
	// Logger receives the access log and errors; the zero value logs nothing.
	Logger zerolog.Logger
	// Tokens, when not empty, are the accepted bearer tokens for /v1 (several
	// allow rotation). SSE routes also accept ?access_token= because a
	// browser's EventSource cannot set headers.
	Tokens []string
	// MetricsAuth puts /metrics behind the tokens too.
	MetricsAuth bool
	// MaxPayload is the largest payload per task (default: the client's,
	// 1 MiB). A request body past it is a 413.
	MaxPayload int
	// MaxBatch is the most payloads one batch may hold (default 1000).
	MaxBatch int
	// MaxBatchBytes caps a batch request's body (default 16 MiB; 413 past
	// it). Batch bodies are read as a stream and rejected at the first item
	// that breaks a limit.
	MaxBatchBytes int
	// MaxBatchDecodes is how many batch bodies are read at once (default
	// 4); more wait, up to the request timeout (then 503).
	MaxBatchDecodes int
	// MaxBodyBytes bounds the bytes of the other JSON bodies (a
	// submission's payload, a schedule) being read at once, over every
	// request (default 64 MiB, at least MaxPayload): a body reserves its
	// Content-Length, up to 64 KiB, before it is read (waiting for room up
	// to the request timeout), and the rest as its bytes arrive (waiting
	// up to a second each time); one that finds no room gets a 503.
	MaxBodyBytes int
	// Heartbeat is the interval of SSE comment heartbeats (default 15s).
	Heartbeat time.Duration
	// WriteTimeout bounds each write to a client; a client that stops
	// reading is cut (default 10s). No whole-response timeout applies to
	// streams.
	WriteTimeout time.Duration
	// MaxStreams caps open SSE streams in total (503 past it, default
	// 1000); MaxStreamsPerClient per client address (429, default 20).
	MaxStreams          int
	MaxStreamsPerClient int
	// RequestTimeout bounds non-streaming requests (default 30s).
	RequestTimeout time.Duration
	// Metrics, when nil, are created.
	Metrics *Metrics
	// Static, when set, is served at / (the dashboard).
	Static http.Handler
	// Loopback says the server listens on loopback addresses only. With no
	// Tokens, requests must then name a loopback Host (localhost, 127.0.0.1,
	// [::1]; 403 otherwise), which defeats DNS rebinding.
	Loopback bool
	// TrustedProxies is the number of reverse proxies in front of the API
	// that append to X-Forwarded-For; the client address (for the
	// per-client stream cap and logs) is then read from that header. 0 (the
	// default) uses the connection's address: clients could forge the header.
	TrustedProxies int
	// TracerProvider, when set, gets a span per submission (see package
	// tracing); nil: none.
	TracerProvider trace.TracerProvider
}

func (c Config) withDefaults() Config {
	if c.MaxPayload <= 0 {
		c.MaxPayload = c.Client.Config().MaxPayload
	}
	if c.MaxBatch <= 0 {
		c.MaxBatch = 1000
	}
	if c.MaxBatchBytes <= 0 {
		c.MaxBatchBytes = 16 << 20
	}
	if c.MaxBatchDecodes <= 0 {
		c.MaxBatchDecodes = 4
	}
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = max(64<<20, c.MaxPayload)
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.MaxStreams <= 0 {
		c.MaxStreams = 1000
	}
	if c.MaxStreamsPerClient <= 0 {
		c.MaxStreamsPerClient = 20
	}
	if c.RequestTimeout <= 0 {
		c.RequestTimeout = 30 * time.Second
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(c.Client)
	}
	return c
}

// API is dsat's HTTP API: an http.Handler on chi. Close ends its open
// event streams (call it before http.Server.Shutdown).
type API struct {
	cfg     Config
	c       *dsat.Client
	log     zerolog.Logger
	router  chi.Router
	hubs    *hubs
	tokens  [][sha256.Size]byte
	limiter *streamLimiter
	// batchSlots bounds the batch bodies being read at once.
	batchSlots chan struct{}
	// bodies bounds the other JSON bodies being read at once.
	bodies  *bodyBudget
	closing chan struct{}
	once    sync.Once
	tracer  trace.Tracer // nil: tracing off
}

// NewRouter returns the API for cfg.
func NewRouter(cfg Config) *API {
	cfg = cfg.withDefaults()
	a := &API{cfg: cfg, c: cfg.Client, log: cfg.Logger, closing: make(chan struct{}),
		limiter: newStreamLimiter(cfg.MaxStreams, cfg.MaxStreamsPerClient), batchSlots: make(chan struct{}, cfg.MaxBatchDecodes),
		bodies: newBodyBudget(int64(cfg.MaxBodyBytes))}
	a.tokens = tokenDigests(cfg.Tokens)
	a.hubs = newHubs(cfg.Client, cfg.Logger, cfg.Metrics)
	if cfg.TracerProvider != nil {
		a.tracer = cfg.TracerProvider.Tracer("github.com/dsat-dev/dsat/httpapi")
	}
	a.router = a.routes()
	return a
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.router.ServeHTTP(w, r) }

// Metrics returns the API's metrics.
func (a *API) Metrics() *Metrics { return a.cfg.Metrics }

// Close ends every open event stream cleanly (each client gets the end of
// its response and may reconnect elsewhere with Last-Event-ID), stops the
// firehose readers and waits for them (about a second at most).
func (a *API) Close() {
	a.once.Do(func() {
		close(a.closing)
		a.hubs.close()
	})
}

func (a *API) routes() chi.Router {
	r := chi.NewRouter()
	if a.cfg.TrustedProxies > 0 {
		r.Use(middleware.ClientIPFromXFFTrustedProxies(a.cfg.TrustedProxies))
	} else {
		r.Use(middleware.ClientIPFromRemoteAddr)
	}
	r.Use(hlog.NewHandler(a.log))
	r.Use(hlog.RequestIDHandler("request_id", "X-Request-Id"))
	r.Use(a.accessLog)
	r.Use(a.recoverer)
	if a.cfg.Loopback && len(a.tokens) == 0 {
		r.Use(a.loopbackHost)
	}
	r.Use(a.sameOrigin)

	// Every route is described in openapi.json (a test keeps them in step).
	r.Get("/healthz", a.healthz)
	r.Get("/readyz", a.readyz)
	r.Get("/openapi.json", a.openapi)
	metrics := promhttp.HandlerFor(a.cfg.Metrics.Registry, promhttp.HandlerOpts{})
	if a.cfg.MetricsAuth {
		r.With(a.auth(false)).Method(http.MethodGet, "/metrics", metrics)
	} else {
		r.Method(http.MethodGet, "/metrics", metrics)
	}

	r.Route("/v1", func(r chi.Router) {
		// Streams: no request timeout and no compression (PITFALLS.md).
		r.With(a.auth(true)).Get("/tasks/{id}/events", a.taskEvents)
		r.With(a.auth(true)).Get("/events", a.firehose)

		r.Group(func(r chi.Router) {
			r.Use(a.auth(false))
			r.Use(middleware.Timeout(a.cfg.RequestTimeout))
			r.Post("/pipelines/{name}/tasks", a.submit)
			r.Post("/pipelines/{name}/batch", a.submitBatch)
			r.Get("/pipelines", a.listPipelines)
			r.Get("/pipelines/{name}", a.getPipeline)
			r.Get("/pipelines/{name}/stats", a.stats)
			r.Post("/pipelines/{name}/pause", a.pause)
			r.Post("/pipelines/{name}/resume", a.resume)
			r.Get("/tasks/{id}", a.getTask)
			r.Post("/tasks/{id}/cancel", a.cancel)
			r.Post("/tasks/{id}/retry", a.retry)
			r.Get("/dead", a.dead)
			// Task search and bulk actions (search.go).
			r.Get("/tasks", a.searchTasks)
			r.Post("/pipelines/{name}/retry-failed", a.retryFailed)
			r.Post("/pipelines/{name}/cancel", a.cancelTasks)
			r.Post("/pipelines/{name}/dead/retry", a.retryDead)
			r.Get("/satellites", a.satellites)
			r.Get("/schedules", a.listSchedules)
			r.Put("/schedules/{id}", a.putSchedule)
			r.Get("/schedules/{id}", a.getSchedule)
			r.Delete("/schedules/{id}", a.deleteSchedule)
			r.Post("/schedules/{id}/pause", a.pauseSchedule(true))
			r.Post("/schedules/{id}/resume", a.pauseSchedule(false))
		})
	})
	r.NotFound(notFound)
	r.MethodNotAllowed(methodNotAllowed(r))
	if a.cfg.Static != nil {
		r.Handle("/*", staticOrNotFound(a.cfg.Static))
	}
	return r
}

// accessLog logs one line per request (request id, route pattern, status,
// duration, task id where known) and counts it; payloads are never logged.
func (a *API) accessLog(next http.Handler) http.Handler {
	return hlog.AccessHandler(func(r *http.Request, status, size int, d time.Duration) {
		route := chi.RouteContext(r.Context()).RoutePattern()
		if route == "" {
			route = "unmatched"
		}
		a.cfg.Metrics.requests.WithLabelValues(route, methodLabel(r.Method), strconv.Itoa(status)).Inc()
		ev := hlog.FromRequest(r).Info()
		if polled(r.Method, route, status) {
			ev = hlog.FromRequest(r).Debug()
		}
		if id := chi.URLParam(r, "id"); id != "" {
			key := "task"
			if strings.HasPrefix(route, "/v1/schedules") {
				key = "schedule"
			}
			ev = ev.Str(key, id)
		}
		ev.Str("method", methodLabel(r.Method)).Str("route", route).Int("status", status).Int("size", size).Dur("duration", d).Msg("request")
	})(next)
}

// pollRoutes are the routes that the dashboard, probes and scrapers read
// every few seconds ("/*" is the dashboard's files).
var pollRoutes = map[string]bool{
	"/v1/pipelines": true, "/v1/pipelines/{name}": true, "/v1/pipelines/{name}/stats": true, "/v1/tasks/{id}": true, "/v1/dead": true, "/v1/tasks": true,
	"/v1/satellites": true, "/v1/schedules": true, "/v1/schedules/{id}": true, "/healthz": true, "/readyz": true, "/metrics": true, "/*": true,
}

// polled says a request is a successful read of a polled route: it is
// logged at debug level, so an open dashboard does not flood the log.
// Writes, event streams and every error stay at info.
func polled(method, route string, status int) bool {
	return (method == http.MethodGet || method == http.MethodHead) && status < 400 && pollRoutes[route]
}

// recoverer turns a panic into a 500 problem without the stack (which
// goes to the log).
func (a *API) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				hlog.FromRequest(r).Error().Interface("panic", p).Bytes("stack", stack()).Msg("handler panic")
				writeProblem(w, r, http.StatusInternalServerError, "internal", "internal error; it was logged")
			}
		}()
		next.ServeHTTP(w, r)
	})
}
