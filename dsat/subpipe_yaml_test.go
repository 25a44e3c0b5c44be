package dsat

import (
	"strings"
	"testing"
	"testing/fstest"
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
	} {
		_, err := ParsePipeline("f.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
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
