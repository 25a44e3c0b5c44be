package dsat

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"
)

// scheduleFields are the fields of a schedule in a pipeline file. The
// pipeline is the file's own: a "pipeline" field is refused.
var scheduleFields = []string{"every", "cron", "timezone", "payload", "paused", "catchup", "jitter", "pipeline"}

// schedules reads a pipeline file's schedules: section, a mapping of
// schedule id to schedule, each checked as the API checks one; every
// problem names the file, the line and the field.
func (l *loader) schedules(n *yaml.Node, pipeline string) []ScheduleSpec {
	if n.Kind != yaml.MappingNode {
		l.add(n.Line, "", "schedules", "must be a mapping of schedule id to schedule (every: or cron:, payload:, ...)")
		return nil
	}
	var out []ScheduleSpec
	ids := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if ids[k.Value] {
			l.add(k.Line, "", "schedules."+k.Value, "schedule declared twice")
			continue
		}
		ids[k.Value] = true
		if s, ok := l.schedule(k, v, pipeline); ok {
			out = append(out, s)
		}
	}
	return out
}

func (l *loader) schedule(k, n *yaml.Node, pipeline string) (ScheduleSpec, bool) {
	at := "schedules." + k.Value
	s := ScheduleSpec{ID: k.Value, Pipeline: pipeline, Line: k.Line}
	f := l.fields(n, "", at, scheduleFields...)
	lines := map[string]int{"id": k.Line}
	before := len(l.errs)
	for _, name := range scheduleFields {
		v, ok := f[name]
		if !ok {
			continue
		}
		lines[name] = v.Line
		switch name {
		case "pipeline":
			l.add(v.Line, "", at+".pipeline", "a schedule in a pipeline file runs that file's pipeline: leave pipeline out")
		case "payload":
			s.Payload = l.yamlJSON(v, at+".payload")
		case "paused":
			if v.Kind != yaml.ScalarNode || v.Decode(&s.Paused) != nil {
				l.add(v.Line, "", at+".paused", "must be true or false")
			}
		default:
			str := l.str(v, "", at+"."+name)
			switch name {
			case "every":
				s.Every = str
			case "cron":
				s.Cron = str
			case "timezone":
				s.Timezone = str
			case "catchup":
				s.Catchup = str
			case "jitter":
				s.Jitter = str
			}
		}
	}
	norm, ps := s.Normalize(0)
	for _, p := range ps {
		if p.Field == "pipeline" && !ValidName(pipeline) {
			continue // the file's name is reported already
		}
		line, ok := lines[p.Field]
		if !ok {
			line = k.Line
		}
		field := at + "." + p.Field
		if p.Field == "id" {
			field = at
		}
		l.add(line, "", field, p.Msg)
	}
	return norm, len(l.errs) == before
}

// yamlJSON turns a YAML value into JSON.
func (l *loader) yamlJSON(n *yaml.Node, field string) json.RawMessage {
	var v any
	if err := n.Decode(&v); err != nil {
		l.add(n.Line, "", field, err.Error())
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		l.add(n.Line, "", field, "cannot be written as JSON (keys must be strings): "+err.Error())
		return nil
	}
	return b
}

// scheduleDuplicates reports schedule ids that another file declared too
// (seen maps an id to its file; the new ones are added).
func scheduleDuplicates(p *Pipeline, seen map[string]string) []error {
	var errs []error
	for _, s := range p.Schedules {
		if other, dup := seen[s.ID]; dup {
			errs = append(errs, &ValidationError{File: p.File, Line: s.Line, Field: "schedules." + s.ID,
				Msg: fmt.Sprintf("schedule %s is also declared in %s; schedule ids are global", strconv.Quote(s.ID), other)})
			continue
		}
		seen[s.ID] = p.File
	}
	return errs
}

// ScheduleDuplicates returns an error naming each schedule id that more
// than one of ps declares (schedule ids are global; LoadPipelines checks
// the files of one folder the same way).
func ScheduleDuplicates(ps []*Pipeline) error {
	seen := map[string]string{}
	var errs []error
	for _, p := range ps {
		errs = append(errs, scheduleDuplicates(p, seen)...)
	}
	return errors.Join(errs...)
}
