package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/dsat-dev/dsat/dsat"
)

// Metrics are dsat's Prometheus metrics. One value serves the API and, in
// processes that run satellites, their handler outcomes (ObserveStep).
type Metrics struct {
	Registry    *prometheus.Registry
	requests    *prometheus.CounterVec
	submissions *prometheus.CounterVec
	events      *prometheus.CounterVec
	steps       *prometheus.HistogramVec
	streams     prometheus.Gauge
}

// NewMetrics registers dsat's metrics, the Go runtime's and the process's,
// on a fresh registry. backlog, when set, is called at each scrape to
// report each step's backlog.
func NewMetrics(c *dsat.Client) *Metrics {
	m := &Metrics{Registry: prometheus.NewRegistry()}
	m.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dsat_http_requests_total", Help: "HTTP requests by route pattern, method and status code."}, []string{"route", "method", "code"})
	m.submissions = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dsat_submissions_total", Help: "Tasks submitted, by pipeline."}, []string{"pipeline"})
	m.events = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "dsat_feed_events_total", Help: "Task events read by this process's live feeds (SSE), by pipeline and event: counted only while a feed is open; per-step counts (processed, failed) are in GET /v1/pipelines/{name}."}, []string{"pipeline", "event"})
	m.steps = prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "dsat_step_duration_seconds", Help: "Handler run time by pipeline, step and outcome (ok, error, timeout, panic, snooze, cancelled).",
		Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60}}, []string{"pipeline", "step", "outcome"})
	m.streams = prometheus.NewGauge(prometheus.GaugeOpts{Name: "dsat_sse_streams", Help: "Open server-sent-event streams."})
	m.Registry.MustRegister(m.requests, m.submissions, m.events, m.steps, m.streams,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if c != nil {
		m.Registry.MustRegister(&backlogCollector{c: c, desc: prometheus.NewDesc("dsat_step_backlog", "Tokens waiting in a step's streams, not yet delivered.", []string{"pipeline", "step"}, nil),
			pendDesc: prometheus.NewDesc("dsat_step_pending", "Tokens delivered to a worker and not yet acknowledged.", []string{"pipeline", "step"}, nil)})
		m.Registry.MustRegister(&breakerCollector{c: c,
			moves: prometheus.NewDesc("dsat_breaker_transitions_total", "Circuit breaker transitions by pipeline, step and the state moved to (open, half_open, closed), over every satellite.", []string{"pipeline", "step", "to"}, nil),
			state: prometheus.NewDesc("dsat_breaker_state", "1 for a circuit breaker's current state (closed, open, half_open), 0 for the others.", []string{"pipeline", "step", "state"}, nil)})
	}
	return m
}

// methodLabel maps an HTTP method to a fixed set of label values: the
// method is client input, and a label per made-up method would grow the
// metrics (and the process) without bound. Every other label of the API's
// metrics comes from a fixed set too: route is the matched route pattern
// (or "unmatched"), code the status the API wrote, pipeline a loaded
// pipeline's name (checked before counting), event a name dsat writes.
func methodLabel(m string) string {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// ObserveStep records one handler run; pass it as workers.Config.OnResult.
func (m *Metrics) ObserveStep(pipeline, step, outcome string, d time.Duration) {
	m.steps.WithLabelValues(pipeline, step, outcome).Observe(d.Seconds())
}

// backlogCollector reads each step's backlog from Redis at scrape time.
type backlogCollector struct {
	c              *dsat.Client
	desc, pendDesc *prometheus.Desc
}

func (b *backlogCollector) Describe(ch chan<- *prometheus.Desc) { ch <- b.desc; ch <- b.pendDesc }

// Collect sums the versions of a pipeline loaded together (a draining one
// beside its successor): a step's labels are its pipeline's name and its
// own, and a registry refuses a metric collected twice.
func (b *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	type ps struct{ pipeline, step string }
	var steps []ps
	sums := map[ps]dsat.StepLoad{}
	for _, p := range b.c.Pipelines() {
		loads, err := b.c.StepLoads(ctx, p)
		if err != nil {
			return
		}
		for _, s := range p.Order {
			k := ps{p.Name, s}
			sum, seen := sums[k]
			if !seen {
				steps = append(steps, k)
			}
			sum.Backlog += loads[s].Backlog
			sum.Pending += loads[s].Pending
			sums[k] = sum
		}
	}
	for _, k := range steps {
		ch <- prometheus.MustNewConstMetric(b.desc, prometheus.GaugeValue, float64(sums[k].Backlog), k.pipeline, k.step)
		ch <- prometheus.MustNewConstMetric(b.pendDesc, prometheus.GaugeValue, float64(sums[k].Pending), k.pipeline, k.step)
	}
}

// breakerCollector reads the circuit breakers' states and transition
// counts from Redis at scrape time (two reads of one slot), only for the
// steps of loaded pipelines that have a breaker: nothing without one.
type breakerCollector struct {
	c            *dsat.Client
	moves, state *prometheus.Desc
}

func (b *breakerCollector) Describe(ch chan<- *prometheus.Desc) { ch <- b.moves; ch <- b.state }

func (b *breakerCollector) Collect(ch chan<- prometheus.Metric) {
	type ps struct{ pipeline, step string }
	var steps []ps
	seen := map[ps]bool{} // a breaker is the step's, whichever version
	for _, p := range b.c.Pipelines() {
		for _, s := range p.Order {
			if k := (ps{p.Name, s}); p.Steps[s].Breaker != nil && !seen[k] {
				seen[k] = true
				steps = append(steps, k)
			}
		}
	}
	if len(steps) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	states, err := b.c.Breakers(ctx)
	if err != nil {
		return
	}
	moves, err := b.c.BreakerTransitions(ctx)
	if err != nil {
		return
	}
	for _, s := range steps {
		field := s.pipeline + "/" + s.step
		now := dsat.BreakerClosed
		if st, ok := states[field]; ok {
			now = st.State
		}
		for _, to := range []string{dsat.BreakerClosed, dsat.BreakerOpen, dsat.BreakerHalfOpen} {
			v := 0.0
			if to == now {
				v = 1
			}
			ch <- prometheus.MustNewConstMetric(b.state, prometheus.GaugeValue, v, s.pipeline, s.step, to)
			ch <- prometheus.MustNewConstMetric(b.moves, prometheus.CounterValue, float64(moves[field][to]), s.pipeline, s.step, to)
		}
	}
}
