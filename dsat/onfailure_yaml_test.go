package dsat

import (
	"strings"
	"testing"
)

// TestParseOnFailure: on_failure names a step nothing else reaches, with
// file:line errors for every incoherent use.
func TestParseOnFailure(t *testing.T) {
	t.Parallel()
	p, err := ParsePipeline("f.yaml", []byte("name: p\nversion: '1.0'\nsteps:\n  a: {handler: h}\n  alert: {handler: h}\non_failure: alert\n"))
	if err != nil || p.OnFailure != "alert" {
		t.Fatalf("%v %+v", err, p)
	}
	for _, tc := range []struct{ name, yaml, want string }{
		{"unknown", "name: p\nversion: '1.0'\nsteps:\n  a: {handler: h}\non_failure: ghost\n",
			`f.yaml:5: field "on_failure": names "ghost", which is not a step`},
		{"entry", "name: p\nversion: '1.0'\nsteps:\n  a: {handler: h}\non_failure: a\n",
			`f.yaml:5: field "on_failure": names the entry step "a"`},
		{"reached", "name: p\nversion: '1.0'\nsteps:\n  a: {handler: h, next: [b]}\n  b: {handler: h}\non_failure: b\n",
			`f.yaml:6: field "on_failure": names "b", which a sends to`},
		{"has next", "name: p\nversion: '1.0'\nsteps:\n  a: {handler: h}\n  alert: {handler: h, next: [z]}\n  z: {handler: h}\non_failure: alert\n",
			`f.yaml:5: step "alert": field "on_failure": the failure handler ends the task`},
		{"sub-pipeline", "name: p\nversion: '1.0'\nsteps:\n  a: {handler: h}\n  alert: {pipeline: q}\non_failure: alert\n",
			`f.yaml:5: step "alert": field "on_failure": the failure handler runs a handler`},
		{"other unreachable", "name: p\nversion: '1.0'\nsteps:\n  a: {handler: h}\n  alert: {handler: h}\n  z: {handler: h}\non_failure: alert\n",
			`f.yaml:6: step "z": unreachable`},
	} {
		_, err := ParsePipeline("f.yaml", []byte(tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}
