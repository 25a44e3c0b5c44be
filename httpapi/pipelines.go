package httpapi

import (
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
	Retries      int               `json:"retries"`
	Backoff      map[string]string `json:"backoff"`
	Concurrency  dsat.Concurrency  `json:"concurrency"`
	Load         *stepLoad         `json:"load,omitempty"`
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
}

func viewOf(p *dsat.Pipeline) pipelineView {
	v := pipelineView{Name: p.Name, Version: p.Version.String(), Partitions: p.Partitions, Entry: p.Entry, Edges: p.Edges()}
	if v.Edges == nil {
		v.Edges = []dsat.Edge{}
	}
	for _, name := range p.Order {
		s := p.Steps[name]
		sv := stepView{Name: name, Handler: s.Handler, With: s.With, Next: s.Next, RouteBy: s.RouteBy,
			Routes: s.Routes, Join: s.Join, Timeout: s.Timeout.String(), Retries: s.Retries,
			Backoff:     map[string]string{"initial": s.Backoff.Initial.String(), "max": s.Backoff.Max.String()},
			Concurrency: s.Concurrency}
		if s.QueueTimeout > 0 {
			sv.QueueTimeout = s.QueueTimeout.String()
		}
		v.Steps = append(v.Steps, sv)
	}
	return v
}

func (a *API) listPipelines(w http.ResponseWriter, r *http.Request) {
	out := []pipelineView{}
	for _, p := range a.c.Pipelines() {
		out = append(out, viewOf(p))
	}
	writeJSON(w, http.StatusOK, out)
}

// getPipeline returns the newest version's definition, graph edges and each
// step's load: backlog and pending from the streams, busy, concurrency,
// processed and failed summed over the live satellites.
func (a *API) getPipeline(w http.ResponseWriter, r *http.Request) {
	p, err := a.c.Pipeline(chi.URLParam(r, "name"))
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
	v := viewOf(p)
	for i := range v.Steps {
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
	}
	writeJSON(w, http.StatusOK, map[string]any{"pipeline": v, "measured_at": dsat.Time{Time: time.Now()}})
}
