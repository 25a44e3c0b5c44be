package dsat

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// TestParseSubPipeline: a pipeline: step has no handler; its errors name
// the file and line, and a cycle of sub-pipelines is refused at load,
// across files.
func TestParseSubPipeline(t *testing.T) {
	t.Parallel()
	p, err := ParsePipeline("f.yaml", []byte("name: p\nversion: '1.0'\nsteps:\n  a: {handler: h, next: [b]}\n  b: {pipeline: mail}\n"))
	if err != nil || p.Steps["b"].Pipeline != "mail" || p.Steps["b"].Handler != "" || !p.HasSubPipelines() {
		t.Fatalf("%v %+v", err, p)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"handler and pipeline", "name: p\nversion: '1.0'\nsteps:\n  a: {handler: h, pipeline: q}\n",
			`f.yaml:4: step "a": field "handler": a step has either a handler or a pipeline`},
		{"with", "name: p\nversion: '1.0'\nsteps:\n  a: {pipeline: q, with: {x: 1}}\n",
			`f.yaml:4: step "a": field "with": a sub-pipeline step has no handler`},
		{"bad name", "name: p\nversion: '1.0'\nsteps:\n  a: {pipeline: Q!}\n",
			`f.yaml:4: step "a": field "pipeline": "Q!" must be a pipeline name`},
		{"timeout past a deadline's reach", "name: p\nversion: '1.0'\nsteps:\n  a: {pipeline: q, timeout: 9000h}\n",
			`f.yaml:4: step "a": field "timeout": bounds the child task, so it is at most 8784h0m0s`},
	} {
		_, err := ParsePipeline("f.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}

	// A given timeout bounds the child; the default timeout does not; a
	// handler step's timeout is its handler's.
	q, err := ParsePipeline("f.yaml", []byte("name: p\nversion: '1.0'\nsteps:\n  a: {pipeline: x, timeout: 2m, next: [b]}\n  b: {pipeline: y, next: [c]}\n  c: {handler: h, timeout: 1m}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if a, b, c := q.Steps["a"], q.Steps["b"], q.Steps["c"]; a.ChildTimeout != 2*time.Minute || b.ChildTimeout != 0 || c.ChildTimeout != 0 || c.Timeout != time.Minute {
		t.Errorf("child timeouts a %s, b %s, c %s (timeout %s)", a.ChildTimeout, b.ChildTimeout, c.ChildTimeout, c.Timeout)
	}

	fsys := fstest.MapFS{
		"a.yaml": {Data: []byte("name: a\nversion: '1.0'\nsteps:\n  s: {pipeline: b}\n")},
		"b.yaml": {Data: []byte("name: b\nversion: '1.0'\nsteps:\n  s: {handler: h, next: [t]}\n  t: {pipeline: a}\n")},
		"c.yaml": {Data: []byte("name: c\nversion: '1.0'\nsteps:\n  s: {pipeline: ghost}\n")},
		"d.yaml": {Data: []byte("name: d\nversion: '1.0'\nsteps:\n  s: {pipeline: d}\n")},
	}
	_, err = LoadPipelines(fsys)
	for _, want := range []string{`b.yaml:5: step "t": field "pipeline": sub-pipeline cycle: a -> b -> a`,
		`c.yaml:4: step "s": field "pipeline": names pipeline "ghost", which is not loaded`,
		`d.yaml:4: step "s": field "pipeline": sub-pipeline cycle: d -> d`} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("load: error %v, want one containing %q", err, want)
		}
	}
	if err := SubPipelineCycles([]*Pipeline{p}); err != nil {
		t.Errorf("a sub-pipeline not among the files is not a cycle: %v", err)
	}
}
