package dsat

import (
	"errors"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Validation of issue 17's sub-pipeline steps (pipeline:). The run-time
// side is in subpipe.go.

// subPipeline reads a step's pipeline field: a sub-pipeline step has no
// handler of its own and no handler settings.
func (l *loader) subPipeline(s *Step, f map[string]*yaml.Node) {
	n := f["pipeline"]
	s.Pipeline = l.str(n, s.Name, "pipeline")
	if s.Pipeline != "" && !ValidName(s.Pipeline) {
		l.add(n.Line, s.Name, "pipeline", fmt.Sprintf("%q must be a pipeline name: 1 to 64 characters of a-z, 0-9, '_' or '-'", s.Pipeline))
	}
	if h, ok := f["handler"]; ok {
		l.add(h.Line, s.Name, "handler", "a step has either a handler or a pipeline (a sub-pipeline), not both")
	}
	if w, ok := f["with"]; ok {
		l.add(w.Line, s.Name, "with", "a sub-pipeline step has no handler to give settings to")
	}
}

// childTimeout makes a sub-pipeline step's timeout its child's deadline
// (ChildTimeout), within what a submission's deadline may be.
func (l *loader) childTimeout(s *Step, n *yaml.Node) {
	if s.Pipeline == "" {
		return
	}
	if s.Timeout > MaxDelay {
		l.add(n.Line, s.Name, "timeout", fmt.Sprintf("bounds the child task, so it is at most %s (a task's deadline)", MaxDelay))
		return
	}
	s.ChildTimeout = s.Timeout
}

// subPipelineChecks checks the sub-pipeline steps of pipelines loaded
// together: each names a loaded pipeline (unknown=true), and no chain of
// them leads back to a pipeline it started from (a cycle, across files).
func subPipelineChecks(ps []*Pipeline, unknown bool) []error {
	byName := map[string]*Pipeline{}
	for _, p := range ps {
		if cur, ok := byName[p.Name]; !ok || p.Version.Compare(cur.Version) > 0 {
			byName[p.Name] = p
		}
	}
	var errs []error
	if unknown {
		for _, p := range ps {
			for _, name := range p.Order {
				st := p.Steps[name]
				if _, ok := byName[st.Pipeline]; st.Pipeline != "" && !ok {
					errs = append(errs, &ValidationError{File: p.File, Line: st.Line, Step: name, Field: "pipeline",
						Msg: fmt.Sprintf("names pipeline %q, which is not loaded; add its file to the pipelines folder", st.Pipeline)})
				}
			}
		}
	}
	// The edges of a pipeline: its sub-pipeline steps that name a loaded
	// pipeline.
	subSteps := func(p *Pipeline) (steps, children []string) {
		for _, name := range p.Order {
			if _, ok := byName[p.Steps[name].Pipeline]; ok {
				steps, children = append(steps, name), append(children, p.Steps[name].Pipeline)
			}
		}
		return steps, children
	}
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, p.Name)
	}
	walkCycles(names, func(n string) []string {
		_, children := subSteps(byName[n])
		return children
	}, func(from string, i int, cycle []string) bool {
		p := byName[from]
		steps, _ := subSteps(p)
		errs = append(errs, &ValidationError{File: p.File, Line: p.Steps[steps[i]].Line, Step: steps[i], Field: "pipeline",
			Msg: "sub-pipeline cycle: " + strings.Join(cycle, " -> ")})
		return false
	})
	return errs
}

// SubPipelineCycles returns an error for each cycle of sub-pipelines among
// ps (a pipeline whose sub-pipeline steps lead back to it); a sub-pipeline
// not among ps is not checked (dsat validate of some files).
func SubPipelineCycles(ps []*Pipeline) error { return errors.Join(subPipelineChecks(ps, false)...) }
