package httpapi

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/dsat-dev/dsat/dsat"
)

// stepView is one step in GET /v1/pipelines/{name}.
type stepView struct {
	Name    string              `json:"name"`
	Handler string              `json:"handler"`
	With    map[string]any      `json:"with,omitempty"`
	Next    []string            `json:"next,omitempty"`
	RouteBy string              `json:"route_by,omitempty"`
	Routes  map[string][]string `json:"routes,omitempty"`
	Join    bool                `json:"join,omitempty"`
	Timeout string              `json:"timeout"`
	// QueueTimeout is absent for a step without one.
	QueueTimeout string            `json:"queue_timeout,omitempty"`
	MaxBacklog   int               `json:"max_backlog,omitempty"`
	Retries      int               `json:"retries"`
	Backoff      map[string]string `json:"backoff"`
	Concurrency  dsat.Concurrency  `json:"concurrency"`
	Load         *stepLoad         `json:"load,omitempty"`
	// Paused: the step is paused, itself or with its pipeline.
	Paused bool `json:"paused,omitempty"`
	// Breaker is the step's circuit breaker, absent for none; its State is
	// absent while it is closed.
	Breaker *breakerView `json:"breaker,omitempty"`
	// Limits are the step's limits, absent for none; Usage is filled by
	// GET /v1/pipelines/{name}.
	Limits *limitsView `json:"limits,omitempty"`
	// Map and join policy settings (issue 17), and the map step whose
	// items the step runs (the dashboard draws it as a stack).
	dsat.MapJoin
	MappedBy string `json:"mapped_by,omitempty"`
	// Pipeline is, for a sub-pipeline step, the child tasks' pipeline.
	Pipeline string `json:"pipeline,omitempty"`
}

// limitsView is a step's limits: its settings and what they hold now.
type limitsView struct {
	Rate          string           `json:"rate,omitempty"`
	Running       int              `json:"running,omitempty"`
	Key           string           `json:"key,omitempty"`
	RunningPerKey int              `json:"running_per_key,omitempty"`
	RatePerKey    string           `json:"rate_per_key,omitempty"`
	Usage         *dsat.LimitUsage `json:"usage,omitempty"`
}

// breakerView is a step's circuit breaker: its settings and, when it is
// not closed, its state.
type breakerView struct {
	Failures int                `json:"failures"`
	Within   string             `json:"within"`
	OpenFor  string             `json:"open_for"`
	State    *dsat.BreakerState `json:"state,omitempty"`
}

// stepLoad is a step's load over every satellite.
type stepLoad struct {
	Backlog     int64 `json:"backlog"`
	Pending     int64 `json:"pending"`
	Busy        int   `json:"busy"`
	Concurrency int   `json:"concurrency"`
	Processed   int64 `json:"processed"`
	Failed      int64 `json:"failed"`
	Satellites  int   `json:"satellites"`
}

type pipelineView struct {
	Name       string      `json:"name"`
	Version    string      `json:"version"`
	Partitions int         `json:"partitions"`
	Entry      string      `json:"entry"`
	Steps      []stepView  `json:"steps"`
	Edges      []dsat.Edge `json:"edges"`
	// Paused: the whole pipeline is paused.
	Paused bool `json:"paused,omitempty"`
	// OnFailure is the pipeline's failure handler step (absent: none).
	OnFailure string `json:"on_failure,omitempty"`
	// Draining: this version was loaded from its record, not a file, to
	// finish its unfinished tasks; submissions go elsewhere or are refused.
	Draining bool `json:"draining,omitempty"`
}

func viewOf(p *dsat.Pipeline, paused dsat.Paused) pipelineView {
	_, all := paused[p.Name]
	v := pipelineView{Name: p.Name, Version: p.Version.String(), Partitions: p.Partitions, Entry: p.Entry, Edges: p.Edges(), Paused: all, OnFailure: p.OnFailure, Draining: p.Draining}
	if v.Edges == nil {
		v.Edges = []dsat.Edge{}
	}
	for _, name := range p.Order {
		s := p.Steps[name]
		sv := stepView{Name: name, Handler: s.Handler, With: s.With, Next: s.Next, RouteBy: s.RouteBy,
			Routes: s.Routes, Join: s.Join, Timeout: s.Timeout.String(), Retries: s.Retries,
			Backoff:     map[string]string{"initial": s.Backoff.Initial.String(), "max": s.Backoff.Max.String()},
			Concurrency: s.Concurrency, MaxBacklog: s.MaxBacklog, Paused: paused.Step(p.Name, name),
			MapJoin: s.MapJoin, MappedBy: p.MapStep(name), Pipeline: s.Pipeline}
		if b := s.Breaker; b != nil {
			sv.Breaker = &breakerView{Failures: b.Failures, Within: b.Within.String(), OpenFor: b.OpenFor.String()}
		}
		if s.QueueTimeout > 0 {
			sv.QueueTimeout = s.QueueTimeout.String()
		}
		if lim := s.Limits; lim != nil {
			sv.Limits = &limitsView{Rate: lim.Rate.String(), Running: lim.Running, Key: lim.Key,
				RunningPerKey: lim.RunningPerKey, RatePerKey: lim.RatePerKey.String()}
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

func (a *API) listPipelines(w http.ResponseWriter, r *http.Request) {
	paused, err := a.c.ListPaused(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	out := []pipelineView{}
	for _, p := range a.c.Pipelines() {
		out = append(out, viewOf(p, paused))
	}
	writeJSON(w, http.StatusOK, out)
}

// getPipeline returns the newest version's (or with ?version=X.Y.Z, that
// loaded version's) definition, graph edges and each step's load: backlog
// and pending from the streams, busy, concurrency, processed and failed
// summed over the live satellites.
func (a *API) getPipeline(w http.ResponseWriter, r *http.Request) {
	if err := checkParams(r, "version"); err != nil {
		writeError(w, r, err)
		return
	}
	p, err := a.pipelineVersion(chi.URLParam(r, "name"), r.URL.Query().Get("version"))
	if err != nil {
		writeError(w, r, err)
		return
	}
	loads, err := a.c.StepLoads(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	sats, err := a.c.Satellites(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	paused, err := a.c.ListPaused(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	breakers, err := a.c.Breakers(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	usage, err := a.c.LimitUsages(r.Context(), p)
	if err != nil {
		writeError(w, r, err)
		return
	}
	v := viewOf(p, paused)
	for i := range v.Steps {
		if u, ok := usage[v.Steps[i].Name]; ok && v.Steps[i].Limits != nil {
			v.Steps[i].Limits.Usage = &u
		}
		s := v.Steps[i].Name
		l := &stepLoad{Backlog: loads[s].Backlog, Pending: loads[s].Pending}
		for _, sat := range sats {
			if sl, ok := sat.Steps[p.Name+"/"+s]; ok {
				l.Busy += sl.Busy
				l.Concurrency += sl.Concurrency
				l.Processed += sl.Processed
				l.Failed += sl.Failed
				l.Satellites++
			}
		}
		v.Steps[i].Load = l
		if st, ok := breakers[p.Name+"/"+s]; ok && v.Steps[i].Breaker != nil {
			v.Steps[i].Breaker.State = &st
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"pipeline": v, "measured_at": dsat.Time{Time: time.Now()}})
}

// pipelineVersion returns the named pipeline's loaded version, the newest
// for "".
func (a *API) pipelineVersion(name, version string) (*dsat.Pipeline, error) {
	if version == "" {
		return a.c.Pipeline(name)
	}
	for _, p := range a.c.Pipelines() {
		if p.Name == name && p.Version.String() == version {
			return p, nil
		}
	}
	return nil, fmt.Errorf("%w: %q version %q is not loaded (GET /v1/pipelines lists the loaded versions)", dsat.ErrPipelineNotFound, name, version)
}

// pauseView is the answer of pause and resume.
type pauseView struct {
	Pipeline string `json:"pipeline"`
	Step     string `json:"step,omitempty"`
	// Paused says whether the pipeline (or step) is paused now: a step
	// resumed while its whole pipeline is paused stays paused.
	Paused bool `json:"paused"`
}

func (a *API) pause(w http.ResponseWriter, r *http.Request)  { a.setPaused(w, r, true) }
func (a *API) resume(w http.ResponseWriter, r *http.Request) { a.setPaused(w, r, false) }

// setPaused pauses or resumes a pipeline, or one step with ?step=.
func (a *API) setPaused(w http.ResponseWriter, r *http.Request, on bool) {
	if err := checkParams(r, "step"); err != nil {
		writeError(w, r, err)
		return
	}
	name, step := chi.URLParam(r, "name"), r.URL.Query().Get("step")
	p, err := a.c.Pipeline(name)
	if err != nil {
		writeError(w, r, err)
		return
	}
	if _, ok := p.Steps[step]; step != "" && !ok {
		writeProblem(w, r, http.StatusNotFound, "step-not-found",
			fmt.Sprintf("pipeline %s has no step %q; GET /v1/pipelines/%s lists its steps", name, trimID(step), name))
		return
	}
	if on {
		err = a.c.Pause(r.Context(), name, step)
	} else {
		err = a.c.Resume(r.Context(), name, step)
	}
	if err != nil {
		writeError(w, r, err)
		return
	}
	paused, err := a.c.ListPaused(r.Context())
	if err != nil {
		writeError(w, r, err)
		return
	}
	now := paused.Step(name, step)
	if step == "" {
		_, now = paused[name]
	}
	writeJSON(w, http.StatusOK, pauseView{Pipeline: name, Step: step, Paused: now})
}
