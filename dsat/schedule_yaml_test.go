package dsat_test

import (
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/dsat-dev/dsat/dsat"
)

func TestSchedulesInAPipelineFile(t *testing.T) {
	t.Parallel()
	p, err := dsat.ParsePipeline("p.yaml", []byte(`name: p
version: 1.0.0
schedules:
  nightly: {cron: "0 3 * * *", timezone: Europe/Paris, payload: {kind: report, n: 2}}
  tick:
    every: 30s
    catchup: none
    jitter: 2s
    paused: true
steps:
  a: {handler: echo}
`))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Schedules) != 2 {
		t.Fatalf("%+v", p.Schedules)
	}
	n, tick := p.Schedules[0], p.Schedules[1]
	if n.ID != "nightly" || n.Pipeline != "p" || n.Cron != "0 3 * * *" || n.Timezone != "Europe/Paris" || string(n.Payload) != `{"kind":"report","n":2}` || n.Line != 4 {
		t.Errorf("nightly %+v", n)
	}
	if tick.Every != "30s" || tick.Catchup != "none" || tick.Jitter != "2s" || !tick.Paused || string(tick.Payload) != "{}" || tick.Line != 5 {
		t.Errorf("tick %+v", tick)
	}
}

func TestSchedulesInAPipelineFileRefused(t *testing.T) {
	t.Parallel()
	_, err := dsat.ParsePipeline("bad.yaml", []byte(`name: p
version: 1.0.0
schedules:
  fast: {every: 1ms}
  Bad: {every: 1s}
  x:
    pipeline: other
    cron: "nope"
    paused: maybe
    at: noon
steps:
  a: {handler: echo}
`))
	var ve dsat.ValidationErrors
	if !errors.As(err, &ve) {
		t.Fatalf("%v", err)
	}
	for _, want := range []string{
		`bad.yaml:4: field "schedules.fast.every": 1ms must be from 1s to 8784h (366 days)`,
		`bad.yaml:5: field "schedules.Bad": "Bad" must be 1 to 64 characters`,
		`bad.yaml:7: field "schedules.x.pipeline": a schedule in a pipeline file runs that file's pipeline`,
		`bad.yaml:8: field "schedules.x.cron": "nope" is not a cron expression`,
		`bad.yaml:9: field "schedules.x.paused": must be true or false`,
		`bad.yaml:10: field "schedules.x.at": unknown field`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("missing %q in:\n%v", want, err)
		}
	}
	if _, err := dsat.ParsePipeline("p.yaml", []byte("name: p\nversion: 1.0.0\nschedules: [a]\nsteps:\n  a: {handler: echo}\n")); err == nil ||
		!strings.Contains(err.Error(), `p.yaml:3: field "schedules": must be a mapping of schedule id to schedule`) {
		t.Fatalf("a list: %v", err)
	}
}

// TestScheduleIDsAreGlobal: two files may not declare one schedule id.
func TestScheduleIDsAreGlobal(t *testing.T) {
	t.Parallel()
	fs := fstest.MapFS{
		"a.yaml": {Data: []byte("name: a\nversion: 1.0.0\nschedules:\n  tick: {every: 1m}\nsteps:\n  s: {handler: echo}\n")},
		"b.yaml": {Data: []byte("name: b\nversion: 1.0.0\nschedules:\n  tick: {every: 1m}\nsteps:\n  s: {handler: echo}\n")},
	}
	_, err := dsat.LoadPipelines(fs)
	if err == nil || !strings.Contains(err.Error(), `b.yaml:4: field "schedules.tick": schedule "tick" is also declared in a.yaml`) {
		t.Fatalf("%v", err)
	}
}
