package dsat

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"time"

	"go.yaml.in/yaml/v3"
)

// ParsePipeline reads one pipeline definition. It is strict: unknown fields
// are errors. Every problem of the file is reported at once, as
// ValidationErrors naming the file, the step and the field.
func ParsePipeline(file string, data []byte) (*Pipeline, error) {
	l := &loader{file: file}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&doc); err != nil {
		l.add(0, "", "", "not valid YAML: "+err.Error())
		return nil, l.errs
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		l.add(extra.Line, "", "", "holds more than one YAML document; put one pipeline per file")
	}
	p := l.pipeline(&doc)
	if len(l.errs) > 0 {
		sort.SliceStable(l.errs, func(i, j int) bool { return l.errs[i].Line < l.errs[j].Line })
		return nil, l.errs
	}
	p.Source = bytes.Clone(data)
	return p, nil
}

// LoadPipelineFile reads and validates one YAML file.
func LoadPipelineFile(path string) (*Pipeline, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("dsat: read pipeline: %w", err)
	}
	return ParsePipeline(path, data)
}

// LoadPipelines reads every *.yaml and *.yml file of fsys (non-recursive).
// It returns the errors of all files joined; two files declaring the same
// name and API version are an error.
func LoadPipelines(fsys fs.FS) ([]*Pipeline, error) {
	var names []string
	for _, pat := range []string{"*.yaml", "*.yml"} {
		m, err := fs.Glob(fsys, pat)
		if err != nil {
			return nil, fmt.Errorf("dsat: list pipelines: %w", err)
		}
		names = append(names, m...)
	}
	sort.Strings(names)
	if len(names) == 0 {
		return nil, ErrNoPipelines
	}
	var out []*Pipeline
	var errs []error
	seen := map[string]string{}
	schedFiles := map[string]string{} // schedule id -> file declaring it
	for _, n := range names {
		data, err := fs.ReadFile(fsys, n)
		if err != nil {
			errs = append(errs, fmt.Errorf("dsat: read %s: %w", n, err))
			continue
		}
		p, err := ParsePipeline(n, data)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		key := p.Name + "@" + p.Version.API()
		if other, dup := seen[key]; dup {
			errs = append(errs, &ValidationError{File: n, Field: "name", Msg: fmt.Sprintf("pipeline %s version %s is also defined in %s", p.Name, p.Version.API(), other)})
			continue
		}
		seen[key] = n
		errs = append(errs, scheduleDuplicates(p, schedFiles)...)
		out = append(out, p)
	}
	errs = append(errs, subPipelineChecks(out, true)...)
	return out, errors.Join(errs...)
}

// LoadPipelineDir is LoadPipelines on a directory of the file system.
func LoadPipelineDir(dir string) ([]*Pipeline, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("dsat: pipelines folder: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("dsat: pipelines folder %s is not a directory", dir)
	}
	ps, err := LoadPipelines(os.DirFS(dir))
	for _, p := range ps {
		p.File = filepath.Join(dir, p.File)
	}
	return ps, err
}

// loader walks the YAML tree and collects every error.
type loader struct {
	file string
	errs ValidationErrors
	// The steps with a map: key (even a bad one) and those with a bad
	// join: value, so that the graph checks do not add errors that only
	// follow from those (dsat/mapjoin.go).
	mapKeys, badJoins []string
}

func (l *loader) add(line int, step, field, msg string) {
	l.errs = append(l.errs, &ValidationError{File: l.file, Line: line, Step: step, Field: field, Msg: msg})
}

// fields checks that n is a mapping with only known keys and returns them.
func (l *loader) fields(n *yaml.Node, step, what string, known ...string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	if n.Kind != yaml.MappingNode {
		l.add(n.Line, step, what, "must be a mapping")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(known, k.Value) {
			field := k.Value
			if step == "" && what != "" {
				field = what + "." + field // outside the steps: say where (schedules.<id>.<field>)
			}
			l.add(k.Line, step, field, fmt.Sprintf("unknown field; known fields are %v", known))
			continue
		}
		if _, dup := out[k.Value]; dup {
			l.add(k.Line, step, k.Value, "given twice")
			continue
		}
		out[k.Value] = v
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func (l *loader) pipeline(doc *yaml.Node) *Pipeline {
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		doc = doc.Content[0]
	}
	p := &Pipeline{File: l.file, Partitions: 1, Steps: map[string]*Step{}}
	f := l.fields(doc, "", "", "name", "version", "partitions", "entry", "description", "steps", "schedules", "on_failure")
	if n, ok := f["name"]; ok {
		p.Name = l.str(n, "", "name")
		if p.Name != "" && !ValidName(p.Name) {
			l.add(n.Line, "", "name", fmt.Sprintf("%q must be 1 to 64 characters of a-z, 0-9, '_' or '-'", p.Name))
		}
	} else {
		l.add(doc.Line, "", "name", "is required")
	}
	if n, ok := f["version"]; ok {
		v, err := ParseVersion(l.str(n, "", "version"))
		if err != nil {
			l.add(n.Line, "", "version", err.Error())
		}
		p.Version = v
	} else {
		l.add(doc.Line, "", "version", "is required (X.Y or X.Y.Z, e.g. 1.0.0)")
	}
	if n, ok := f["partitions"]; ok {
		p.Partitions = l.intIn(n, "", "partitions", 1, MaxPartitions)
	}
	if n, ok := f["entry"]; ok {
		p.Entry = l.str(n, "", "entry")
	}
	if n, ok := f["schedules"]; ok {
		p.Schedules = l.schedules(n, p.Name)
	}
	stepsNode, ok := f["steps"]
	if !ok {
		l.add(doc.Line, "", "steps", "is required: declare at least one step")
		return p
	}
	if stepsNode.Kind != yaml.MappingNode || len(stepsNode.Content) == 0 {
		l.add(stepsNode.Line, "", "steps", "must be a mapping of step name to step with at least one step")
		return p
	}
	lines := map[string]int{}
	for i := 0; i+1 < len(stepsNode.Content); i += 2 {
		k, v := stepsNode.Content[i], stepsNode.Content[i+1]
		name := k.Value
		if !ValidName(name) {
			l.add(k.Line, name, "", "step name must be 1 to 64 characters of a-z, 0-9, '_' or '-'")
			continue
		}
		if _, dup := p.Steps[name]; dup {
			l.add(k.Line, name, "", "step declared twice")
			continue
		}
		lines[name] = k.Line
		p.Steps[name] = l.step(name, v)
		p.Order = append(p.Order, name)
	}
	if p.Entry == "" && len(p.Order) > 0 {
		p.Entry = p.Order[0]
	}
	if n, ok := f["on_failure"]; ok {
		p.OnFailure = l.str(n, "", "on_failure") // before graph: the handler is reached by no edge
	}
	l.graph(p, lines, f["entry"])
	l.onFailure(p, f["on_failure"])
	return p
}

var stepFields = []string{"handler", "with", "next", "route_by", "routes", "join", "timeout", "queue_timeout", "max_backlog", "breaker", "retries", "backoff", "concurrency", "description",
	"map", "max_items", "max_parallel", "limits", "pipeline"}

func (l *loader) step(name string, n *yaml.Node) *Step {
	s := &Step{
		Name: name, Line: n.Line, Timeout: DefaultTimeout, Retries: DefaultRetries,
		Backoff:     Backoff{Initial: DefaultBackoffInitial, Max: DefaultBackoffMax},
		Concurrency: Concurrency{Min: DefaultConcurrencyMin, Max: DefaultConcurrencyMax},
	}
	f := l.fields(n, name, "", stepFields...)
	if h, ok := f["handler"]; ok {
		s.Handler = l.str(h, name, "handler")
	}
	if _, sub := f["pipeline"]; sub {
		l.subPipeline(s, f)
	} else if _, ok := f["handler"]; !ok && n.Kind == yaml.MappingNode {
		l.add(n.Line, name, "handler", "is required: name a handler registered in the worker binary (e.g. echo)")
	}
	if w, ok := f["with"]; ok {
		if w.Kind != yaml.MappingNode {
			l.add(w.Line, name, "with", "must be a mapping of the handler's settings")
		} else if err := w.Decode(&s.With); err != nil {
			l.add(w.Line, name, "with", err.Error())
		}
	}
	if v, ok := f["next"]; ok {
		s.Next = l.strList(v, name, "next")
	}
	if v, ok := f["route_by"]; ok {
		s.RouteBy = l.str(v, name, "route_by")
		if _, has := f["routes"]; !has {
			l.add(v.Line, name, "route_by", "only makes sense with routes")
		}
	}
	if v, ok := f["routes"]; ok {
		s.Routes = l.routes(v, name)
		if _, has := f["next"]; has {
			l.add(v.Line, name, "routes", "a step has either next (fan-out) or routes (switch), not both")
		}
		if s.RouteBy == "" {
			s.RouteBy = DefaultRouteBy
		}
	}
	if v, ok := f["join"]; ok {
		l.join(v, s)
	}
	l.mapFields(f, s)
	if v, ok := f["timeout"]; ok {
		s.Timeout = l.duration(v, name, "timeout")
		l.childTimeout(s, v)
	}
	if v, ok := f["queue_timeout"]; ok {
		s.QueueTimeout = l.duration(v, name, "queue_timeout")
		if s.QueueTimeout > 0 && s.QueueTimeout < MinQueueTimeout {
			l.add(v.Line, name, "queue_timeout", fmt.Sprintf("must be at least %s: tokens are looked at about once a second", MinQueueTimeout))
		}
	}
	if v, ok := f["max_backlog"]; ok {
		s.MaxBacklog = l.intIn(v, name, "max_backlog", 1, 100_000_000)
	}
	if v, ok := f["retries"]; ok {
		s.Retries = l.intIn(v, name, "retries", 0, 100)
	}
	if v, ok := f["backoff"]; ok {
		l.backoff(v, s)
	}
	if v, ok := f["concurrency"]; ok {
		l.concurrency(v, s)
	}
	if v, ok := f["breaker"]; ok {
		l.breaker(v, s)
	}
	if v, ok := f["limits"]; ok {
		l.limits(v, s)
	}
	return s
}

func (l *loader) backoff(n *yaml.Node, s *Step) {
	f := l.fields(n, s.Name, "backoff", "initial", "max")
	if v, ok := f["initial"]; ok {
		s.Backoff.Initial = l.duration(v, s.Name, "backoff.initial")
	}
	if v, ok := f["max"]; ok {
		s.Backoff.Max = l.duration(v, s.Name, "backoff.max")
	}
	if s.Backoff.Max > 0 && s.Backoff.Initial > s.Backoff.Max {
		l.add(n.Line, s.Name, "backoff", fmt.Sprintf("initial %s is longer than max %s", s.Backoff.Initial, s.Backoff.Max))
	}
}

func (l *loader) breaker(n *yaml.Node, s *Step) {
	f := l.fields(n, s.Name, "breaker", "failures", "within", "open_for")
	b := &Breaker{Failures: 20, Within: time.Minute, OpenFor: 30 * time.Second}
	if v, ok := f["failures"]; ok {
		b.Failures = l.intIn(v, s.Name, "breaker.failures", 1, 1_000_000)
	}
	for name, d := range map[string]*time.Duration{"within": &b.Within, "open_for": &b.OpenFor} {
		if v, ok := f[name]; ok {
			if got, err := time.ParseDuration(v.Value); v.Kind != yaml.ScalarNode || err != nil || got < time.Second {
				l.add(v.Line, s.Name, "breaker."+name, fmt.Sprintf("must be a Go duration of at least 1s such as 30s or 1m, got %q", v.Value))
			} else {
				*d = got
			}
		}
	}
	s.Breaker = b
}

func (l *loader) concurrency(n *yaml.Node, s *Step) {
	f := l.fields(n, s.Name, "concurrency", "min", "max")
	if v, ok := f["min"]; ok {
		s.Concurrency.Min = l.intIn(v, s.Name, "concurrency.min", 1, 4096)
	}
	if v, ok := f["max"]; ok {
		s.Concurrency.Max = l.intIn(v, s.Name, "concurrency.max", 1, 4096)
	} else if s.Concurrency.Min > s.Concurrency.Max {
		s.Concurrency.Max = s.Concurrency.Min
	}
	if s.Concurrency.Min > s.Concurrency.Max {
		l.add(n.Line, s.Name, "concurrency", fmt.Sprintf("min %d is larger than max %d", s.Concurrency.Min, s.Concurrency.Max))
	}
}

func (l *loader) routes(n *yaml.Node, step string) map[string][]string {
	out := map[string][]string{}
	if n.Kind != yaml.MappingNode || len(n.Content) == 0 {
		l.add(n.Line, step, "routes", "must be a mapping of route label to a list of next steps")
		return out
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "" {
			l.add(k.Line, step, "routes", "a route label is empty")
			continue
		}
		if _, dup := out[k.Value]; dup {
			l.add(k.Line, step, "routes."+k.Value, "route label given twice")
			continue
		}
		out[k.Value] = l.strList(v, step, "routes."+k.Value)
	}
	return out
}

func (l *loader) str(n *yaml.Node, step, field string) string {
	if n.Kind != yaml.ScalarNode || n.Tag == "!!null" {
		l.add(n.Line, step, field, "must be a string")
		return ""
	}
	return n.Value
}

func (l *loader) strList(n *yaml.Node, step, field string) []string {
	if n.Kind == yaml.ScalarNode && n.Tag != "!!null" {
		return []string{n.Value} // "next: report" is short for "next: [report]"
	}
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		l.add(n.Line, step, field, "must be a step name or a non-empty list of step names")
		return nil
	}
	var out []string
	for _, c := range n.Content {
		if c.Kind != yaml.ScalarNode {
			l.add(c.Line, step, field, "must list step names")
			continue
		}
		if contains(out, c.Value) {
			l.add(c.Line, step, field, fmt.Sprintf("lists %q twice", c.Value))
			continue
		}
		out = append(out, c.Value)
	}
	return out
}

func (l *loader) intIn(n *yaml.Node, step, field string, lo, hi int) int {
	v, err := strconv.Atoi(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || v < lo || v > hi {
		l.add(n.Line, step, field, fmt.Sprintf("must be a whole number from %d to %d, got %q", lo, hi, n.Value))
		return lo
	}
	return v
}

func (l *loader) duration(n *yaml.Node, step, field string) time.Duration {
	d, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil || d <= 0 {
		l.add(n.Line, step, field, fmt.Sprintf("must be a positive Go duration such as 5s, 200ms or 1m30s, got %q", n.Value))
		return time.Second
	}
	return d
}
