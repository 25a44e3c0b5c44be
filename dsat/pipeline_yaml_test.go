package dsat

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

const textstats = `
name: textstats
version: 1.2.0
partitions: 1
steps:
  normalize:
    handler: exec
    with: {command: [python3, normalize.py]}
    next: [count, lang]
    timeout: 5s
    queue_timeout: 1m
    retries: 3
    backoff: {initial: 200ms, max: 30s}
    concurrency: {min: 1, max: 16}
  lang:
    handler: detect
    route_by: lang
    routes: {en: [english], default: [other]}
  count:   {handler: wordcount, next: [report]}
  english: {handler: echo, next: [report]}
  other:   {handler: echo, next: [report]}
  report:  {handler: echo, join: true}
`

func TestParsePipelineDesignExample(t *testing.T) {
	t.Parallel()
	p, err := ParsePipeline("textstats.yaml", []byte(textstats))
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "textstats" || p.Version.String() != "1.2.0" || p.Entry != "normalize" || len(p.Order) != 6 {
		t.Fatalf("pipeline: %+v", p)
	}
	n := p.Steps["normalize"]
	if n.Timeout != 5*time.Second || n.QueueTimeout != time.Minute || p.Steps["count"].QueueTimeout != 0 || n.Retries != 3 || n.Backoff != (Backoff{200 * time.Millisecond, 30 * time.Second}) ||
		n.Concurrency != (Concurrency{1, 16}) || n.With["command"].([]any)[0] != "python3" {
		t.Fatalf("normalize: %+v", n)
	}
	c := p.Steps["count"]
	if c.Timeout != DefaultTimeout || c.Retries != DefaultRetries || c.Backoff.Initial != time.Second ||
		c.Backoff.Max != 5*time.Minute || c.Concurrency != (Concurrency{1, 64}) {
		t.Fatalf("defaults: %+v", c)
	}
	if l := p.Steps["lang"]; !l.IsSwitch() || l.RouteBy != "lang" || strings.Join(l.Targets(), ",") != "other,english" {
		t.Fatalf("lang: %+v targets %v", l, l.Targets())
	}
	if r := p.Steps["report"]; !r.Join || strings.Join(r.Preds, ",") != "count,english,other" {
		t.Fatalf("report preds: %v", r.Preds)
	}
	if len(p.Edges()) != 7 {
		t.Fatalf("edges: %v", p.Edges())
	}
}

// TestParsePipelineReportsEveryError: one broken file, every problem
// reported at once, each naming file, step and field.
func TestParsePipelineReportsEveryError(t *testing.T) {
	t.Parallel()
	const broken = `
name: Bad Name
version: v1.2
surprise: 1
steps:
  a:
    handler: echo
    next: [b, ghost]
    timeout: 5 seconds
    retries: -1
    colour: red
  b:
    next: [c]
    backoff: {initial: 1m, max: 1s}
    concurrency: {min: 4, max: 2}
    queue_timeout: 500ms
  c: {handler: echo, join: true, queue_timeout: soon}
  island: {handler: echo}
  sw: {handler: echo, route_by: x}
`
	_, err := ParsePipeline("broken.yaml", []byte(broken))
	var ve ValidationErrors
	if !errors.As(err, &ve) {
		t.Fatalf("error %v is not ValidationErrors", err)
	}
	want := []string{
		`broken.yaml:2: field "name": "Bad Name" must be`,
		`broken.yaml:3: field "version": dsat: invalid version "v1.2"`,
		`broken.yaml:4: field "surprise": unknown field`,
		`step "a": field "timeout": must be a positive Go duration`,
		`step "a": field "retries": must be a whole number from 0 to 100`,
		`step "a": field "colour": unknown field`,
		`step "b": field "handler": is required`,
		`step "b": field "backoff": initial 1m0s is longer than max 1s`,
		`step "b": field "concurrency": min 4 is larger than max 2`,
		`broken.yaml:16: step "b": field "queue_timeout": must be at least 1s`,
		`broken.yaml:17: step "c": field "queue_timeout": must be a positive Go duration`,
		`step "sw": field "route_by": only makes sense with routes`,
		`step "a": field "next": unknown target step "ghost"`,
	}
	msg := err.Error()
	for _, w := range want {
		if !strings.Contains(msg, w) {
			t.Errorf("missing %q in:\n%s", w, msg)
		}
	}
	for _, e := range ve {
		if e.File != "broken.yaml" || e.Line == 0 {
			t.Errorf("error without file or line: %+v", e)
		}
	}
}

func TestParsePipelineGraphRules(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, yaml, want string }{
		{"cycle", `{name: p, version: "1.0", steps: {a: {handler: h, next: [b]}, b: {handler: h, next: [a]}}}`, "cycle: a -> b -> a"},
		{"self", `{name: p, version: "1.0", steps: {a: {handler: h, next: [a]}}}`, "cannot send to itself"},
		{"unreachable", `{name: p, version: "1.0", steps: {a: {handler: h}, b: {handler: h}}}`, `step "b": unreachable from the entry step "a"`},
		{"join one pred", `{name: p, version: "1.0", steps: {a: {handler: h, next: [b]}, b: {handler: h, join: true}}}`, "a join needs two or more predecessor steps, has 1"},
		{"bad entry", `{name: p, version: "1.0", entry: z, steps: {a: {handler: h}}}`, `field "entry": names "z"`},
		{"bad route target", `{name: p, version: "1.0", steps: {a: {handler: h, routes: {x: [q]}}}}`, `field "routes.x": unknown target step "q"`},
		{"next and routes", `{name: p, version: "1.0", steps: {a: {handler: h, next: [b], routes: {x: [b]}}, b: {handler: h}}}`, "either next (fan-out) or routes (switch)"},
		{"bad step name", `{name: p, version: "1.0", steps: {"A!": {handler: h}}}`, `step "A!": step name must be`},
		{"no steps", `{name: p, version: "1.0", steps: {}}`, "at least one step"},
		{"missing version", `{name: p, steps: {a: {handler: h}}}`, `field "version": is required`},
		{"duplicate next", `{name: p, version: "1.0", steps: {a: {handler: h, next: [b, b]}, b: {handler: h}}}`, `lists "b" twice`},
		{"partitions", `{name: p, version: "1.0", partitions: 0, steps: {a: {handler: h}}}`, `field "partitions": must be a whole number from 1 to 1024`},
		{"two documents", "name: p\nversion: '1.0'\nsteps: {a: {handler: h}}\n---\nname: q\n", "more than one YAML document"},
		{"not yaml", "a: [", "not valid YAML"},
	} {
		_, err := ParsePipeline("f.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestParsePipelineEntryAndShortNext(t *testing.T) {
	t.Parallel()
	p, err := ParsePipeline("f.yaml", []byte(`{name: p, version: "1.0", entry: b, steps: {a: {handler: h}, b: {handler: h, next: a}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if p.Entry != "b" || p.Steps["b"].Next[0] != "a" {
		t.Fatalf("%+v", p)
	}
}

func TestLoadPipelines(t *testing.T) {
	t.Parallel()
	fsys := fstest.MapFS{
		"a.yaml":   {Data: []byte(`{name: a, version: "1.0", steps: {s: {handler: h}}}`)},
		"b.yml":    {Data: []byte(`{name: a, version: "1.0.1", steps: {s: {handler: h}}}`)},
		"c.yaml":   {Data: []byte(`{name: c, version: "1.0", steps: {s: {handler: h, bogus: 1}}}`)},
		"notes.md": {Data: []byte(`ignored`)},
	}
	ps, err := LoadPipelines(fsys)
	if err == nil || !strings.Contains(err.Error(), "also defined in a.yaml") || !strings.Contains(err.Error(), `c.yaml:1: step "s": field "bogus"`) {
		t.Fatalf("error %v", err)
	}
	if len(ps) != 1 || ps[0].Name != "a" {
		t.Fatalf("loaded %v", ps)
	}
	if _, err := LoadPipelines(fstest.MapFS{}); err == nil {
		t.Fatal("empty folder accepted")
	}
}

// FuzzParsePipeline: the loader never panics; a definition it accepts is a
// valid graph.
func FuzzParsePipeline(f *testing.F) {
	f.Add(textstats)
	f.Add(`{name: p, version: "1.0", steps: {a: {handler: h, next: [b]}, b: {handler: h, next: [a]}}}`)
	f.Add("name: p\nversion: 1.0\nsteps:\n  a: {handler: h, routes: {x: [a]}}\n")
	f.Add("[1, 2")
	f.Fuzz(func(t *testing.T, src string) {
		p, err := ParsePipeline("f.yaml", []byte(src))
		if err != nil {
			return
		}
		if !ValidName(p.Name) || p.Steps[p.Entry] == nil || findCycle(p) != nil || len(topoOrderForTest(p)) != len(p.Order) {
			t.Fatalf("accepted an invalid pipeline: %+v", p)
		}
	})
}

// TestParseBreaker: a breaker's settings and defaults, and its errors
// with file and line.
func TestParseBreaker(t *testing.T) {
	t.Parallel()
	p, err := ParsePipeline("b.yaml", []byte(`
name: b
version: 1.0.0
steps:
  a: {handler: echo, next: [b], breaker: {failures: 3, within: 10s, open_for: 2s}}
  b: {handler: echo, breaker: {}}
`))
	if err != nil {
		t.Fatal(err)
	}
	if b := p.Steps["a"].Breaker; b == nil || *b != (Breaker{Failures: 3, Within: 10 * time.Second, OpenFor: 2 * time.Second}) {
		t.Fatalf("breaker of a: %+v", b)
	}
	if b := p.Steps["b"].Breaker; b == nil || *b != (Breaker{Failures: 20, Within: time.Minute, OpenFor: 30 * time.Second}) {
		t.Fatalf("defaults: %+v", b)
	}
	_, err = ParsePipeline("b.yaml", []byte(`
name: b
version: 1.0.0
steps:
  a:
    handler: echo
    breaker: {failures: 0, within: 500ms, colour: red}
`))
	for _, want := range []string{`b.yaml:7: step "a": field "breaker.failures": must be a whole number from 1`,
		`b.yaml:7: step "a": field "breaker.within": must be a Go duration of at least 1s such as 30s or 1m, got "500ms"`, `step "a": field "colour": unknown field; known fields are [failures within open_for]`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in %v", want, err)
		}
	}
}
