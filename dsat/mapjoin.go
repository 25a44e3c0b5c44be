package dsat

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"
	"go.yaml.in/yaml/v3"
)

// Join policies (join: in YAML; README, "Map and join policies").
const (
	// JoinAll is the synchronizing merge: the join fires once every live
	// token of the task is parked at it (join: all, or join: true).
	JoinAll = "all"
	// JoinSettled fires once every live branch has ended or died, with
	// {"outputs": {...}, "errors": {branch: reason}}: a dead branch no
	// longer blocks the task.
	JoinSettled = "settled"
	// JoinAny fires on the first arrival and cancels the other branches.
	JoinAny = "any"
)

// DefaultMaxItems is a map step's max_items when not given.
const DefaultMaxItems = 10000

// MaxMaxItems is the largest max_items.
const MaxMaxItems = 1_000_000

// MapJoin holds a step's map and join policy settings.
type MapJoin struct {
	// Map names the output field holding an array: one token per element
	// goes to the step's one next step (map in YAML).
	Map string `json:"map,omitempty"`
	// MaxItems bounds the array's length (max_items; DefaultMaxItems).
	MaxItems int `json:"max_items,omitempty"`
	// MaxParallel, on the step a map sends its items to, bounds how many
	// of one task's items are in flight at once (max_parallel; 0: all).
	MaxParallel int `json:"max_parallel,omitempty"`
	// JoinPolicy is the join's policy (JoinAll, JoinSettled, JoinAny);
	// empty for a step that is not a join.
	JoinPolicy string `json:"join_policy,omitempty"`
}

// join reads join: true/false or a policy name.
func (l *loader) join(v *yaml.Node, s *Step) {
	var b bool
	if v.Kind == yaml.ScalarNode && v.Tag == "!!bool" && v.Decode(&b) == nil {
		s.Join = b
		if b {
			s.JoinPolicy = JoinAll
		}
		return
	}
	switch p := v.Value; {
	case v.Kind == yaml.ScalarNode && (p == JoinAll || p == JoinSettled || p == JoinAny):
		s.Join, s.JoinPolicy = true, p
	default:
		l.badJoins = append(l.badJoins, s.Name)
		l.add(v.Line, s.Name, "join", fmt.Sprintf("must be all, settled or any (true means all), got %q", v.Value))
	}
}

// mapFields reads map, max_items and max_parallel.
func (l *loader) mapFields(f map[string]*yaml.Node, s *Step) {
	if v, ok := f["map"]; ok {
		l.mapKeys = append(l.mapKeys, s.Name)
		s.Map = l.str(v, s.Name, "map")
		s.MaxItems = DefaultMaxItems
		if s.Map == "" && v.Kind == yaml.ScalarNode && v.Tag != "!!null" {
			l.add(v.Line, s.Name, "map", "must name the output field that holds the array, got an empty string")
		} else if s.Map != "" && s.RouteBy == s.Map {
			l.add(v.Line, s.Name, "map", fmt.Sprintf("field %q is also the step's route_by: a map sends every item to its next step, it does not route", s.Map))
		} else if len(s.Routes) > 0 {
			l.add(v.Line, s.Name, "map", "a map sends every item to its one next step: it cannot have routes")
		}
	}
	if v, ok := f["max_items"]; ok {
		s.MaxItems = l.intIn(v, s.Name, "max_items", 1, MaxMaxItems)
		if s.Map == "" {
			l.add(v.Line, s.Name, "max_items", "only makes sense with map")
		}
	}
	if v, ok := f["max_parallel"]; ok {
		s.MaxParallel = l.intIn(v, s.Name, "max_parallel", 1, MaxMaxItems)
	}
}

// mapRegion follows the items of map step m: the chain of steps they run
// (the mapped steps, each with one next step) and the join they end at
// ("" when the chain is not well formed).
func mapRegion(p *Pipeline, m *Step) (chain []string, join string) {
	if len(m.Next) != 1 {
		return nil, ""
	}
	cur := m.Next[0]
	for len(chain) <= len(p.Order) {
		s := p.Steps[cur]
		if s == nil || s.Join || s.Map != "" || s.IsSwitch() || len(s.Next) != 1 || len(s.Preds) != 1 {
			return chain, ""
		}
		chain = append(chain, cur)
		next := p.Steps[s.Next[0]]
		if next != nil && next.Join {
			if len(next.Preds) != 1 {
				return chain, ""
			}
			return chain, next.Name
		}
		cur = s.Next[0]
	}
	return chain, ""
}

// mapOf returns the map step whose items run step name, or nil.
func mapOf(p *Pipeline, name string) *Step {
	for _, n := range p.Order {
		if m := p.Steps[n]; m.Map != "" {
			if chain, _ := mapRegion(p, m); contains(chain, name) {
				return m
			}
		}
	}
	return nil
}

// mapGraph checks the map and join settings of step s against the graph.
func (l *loader) mapGraph(p *Pipeline, s *Step) {
	line := s.Line
	if s.Map != "" && !s.IsSwitch() {
		l.checkMap(p, s)
	}
	if s.MaxParallel > 0 && (len(s.Preds) != 1 || p.Steps[s.Preds[0]].Map == "") {
		if m := mapOf(p, s.Name); m != nil {
			l.add(line, s.Name, "max_parallel", fmt.Sprintf("goes on the first step of the items of the map of step %q, %q: it bounds the items in the whole chain", m.Name, m.Next[0]))
		} else {
			l.add(line, s.Name, "max_parallel", "needs a map upstream: set it on the step a map sends its items to")
		}
	}
	if s.Join && len(s.Preds) >= 1 {
		if mapped := mapOf(p, s.Preds[0]); mapped != nil {
			if s.JoinPolicy == JoinAny {
				l.add(line, s.Name, "join", fmt.Sprintf("join: any cannot follow the map of step %q: its input is every item's output (use all or settled)", mapped.Name))
			}
		}
	}
}

// checkMap checks the chain of steps a map's items run and its join.
func (l *loader) checkMap(p *Pipeline, m *Step) {
	if len(m.Next) != 1 {
		l.add(m.Line, m.Name, "next", fmt.Sprintf("a map step sends its items to exactly one next step, has %d", len(m.Next)))
		return
	}
	chain, join := mapRegion(p, m)
	if join != "" {
		return
	}
	// Say what is wrong with the first step that breaks the chain.
	last := m.Name
	if len(chain) > 0 {
		last = chain[len(chain)-1]
	}
	next := p.Steps[p.Steps[last].Next[0]]
	switch {
	case next.Join && len(chain) == 0 && len(next.Preds) == 1:
		l.add(next.Line, next.Name, "join", fmt.Sprintf("the items of the map of step %q must run a step before the join: add one between them (%s: next: [work]; work: next: [%s])", m.Name, m.Name, next.Name))
	case next.Join:
		l.add(next.Line, next.Name, "join", fmt.Sprintf("the join after the map of step %q may have only that one predecessor %q, has %v", m.Name, last, next.Preds))
	case next.Map != "":
		l.add(next.Line, next.Name, "map", fmt.Sprintf("a map cannot run inside the items of the map of step %q", m.Name))
	case len(next.Preds) != 1:
		l.add(next.Line, next.Name, "", fmt.Sprintf("runs the items of the map of step %q, so it may have only one predecessor, has %v", m.Name, next.Preds))
	case next.IsSwitch() || len(next.Next) > 1:
		l.add(next.Line, next.Name, "next", fmt.Sprintf("runs the items of the map of step %q: it needs exactly one next step (no fan-out, no routes)", m.Name))
	case contains(l.badJoins, next.Name): // its join: value is the error
	default:
		l.add(next.Line, next.Name, "next", fmt.Sprintf("the items of the map of step %q must end at a join: add a step with join: all (or settled) after it", m.Name))
	}
}

// belowMap reports whether join j's single-predecessor chain goes up to a
// step with a map key: the join of a map (well formed or not) may have one
// predecessor.
func (l *loader) belowMap(p *Pipeline, j *Step) bool {
	cur := j
	for range p.Order {
		if len(cur.Preds) != 1 {
			return false
		}
		cur = p.Steps[cur.Preds[0]]
		if cur == nil || cur.Join {
			return false
		}
		if contains(l.mapKeys, cur.Name) {
			return true
		}
	}
	return false
}

// ancestors lists the steps from which step name can be reached.
func ancestors(p *Pipeline, name string) []string {
	seen := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		for _, pr := range p.Steps[n].Preds {
			if !seen[pr] {
				seen[pr] = true
				walk(pr)
			}
		}
	}
	walk(name)
	var out []string
	for _, n := range p.Order {
		if seen[n] {
			out = append(out, n)
		}
	}
	return out
}

// joinSpec is how the scripts get a join (lua/maplib.lua): its name alone
// for join: all (as before issue 17, so a pipeline without the feature
// sends the same arguments), else "<name>|<kind>|<steps>": kind m (after
// a map, all), ms (after a map, settled; steps: the mapped steps), s
// (settled; steps: its ancestors), a (any; steps: its ancestors).
func joinSpec(p *Pipeline, name string) string {
	j := p.Steps[name]
	if len(j.Preds) == 1 {
		if m := mapOf(p, j.Preds[0]); m != nil {
			chain, _ := mapRegion(p, m)
			if j.JoinPolicy == JoinSettled {
				return name + "|ms|" + strings.Join(chain, ",")
			}
			return name + "|m|"
		}
	}
	switch j.JoinPolicy {
	case JoinSettled:
		return name + "|s|" + strings.Join(ancestors(p, name), ",")
	case JoinAny:
		return name + "|a|" + strings.Join(ancestors(p, name), ",")
	}
	return name
}

// usesMapJoin reports whether the pipeline has a map or a join policy
// other than all: only then do complete and fail get the extra arguments.
func usesMapJoin(p *Pipeline) bool {
	for _, s := range p.Steps {
		if s.Map != "" || (s.Join && s.JoinPolicy != JoinAll) {
			return true
		}
	}
	return false
}

// mapRouteArg is complete.lua's ARGV[7..9] for a map step and for a step
// running a map's items; ok false for any other step.
//
//	map step:   "map",  field, "<max_items>|<max_parallel>|<join>|<first mapped step>"
//	item step:  "item", map step, "<join>|<first mapped step when max_parallel>"
func mapRouteArg(p *Pipeline, s *Step) (args []any, release string, ok bool) {
	if s.Map != "" {
		chain, join := mapRegion(p, s)
		first := p.Steps[chain[0]]
		return []any{"map", s.Map, fmt.Sprintf("%d|%d|%s|%s", s.MaxItems, first.MaxParallel, join, first.Name)}, "", true
	}
	m := mapOf(p, s.Name)
	if m == nil {
		return nil, "", false
	}
	chain, join := mapRegion(p, m)
	if p.Steps[chain[0]].MaxParallel > 0 {
		release = chain[0]
	}
	return []any{"item", m.Name, join + "|" + release}, release, true
}

// CancelledByAny reports whether step name runs upstream of a join: any,
// whose first arrival cancels its tokens: a satellite then watches its
// running tokens (workers/watch.go).
func (p *Pipeline) CancelledByAny(name string) bool {
	for _, n := range p.Order {
		if j := p.Steps[n]; j.JoinPolicy == JoinAny && contains(ancestors(p, n), name) {
			return true
		}
	}
	return false
}

// TokensCancelled reports, for each delivery, whether a join: any
// cancelled its token (its record has the state c): one pipelined HGET
// per delivery. A satellite asks only for the running tokens of steps
// upstream of such a join (Pipeline.CancelledByAny).
func (c *Client) TokensCancelled(ctx context.Context, ds []Delivery) ([]bool, error) {
	out := make([]bool, len(ds))
	cmds := make([]*redis.StringCmd, len(ds))
	_, err := c.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, d := range ds {
			if p, err := deliveryPartition(d); err == nil {
				cmds[i] = pl.HGet(ctx, c.keys.Task(p, d.Task), "k:"+d.Token)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("dsat: read token states: %w", err)
	}
	for i, cmd := range cmds {
		if cmd != nil {
			out[i] = strings.HasPrefix(cmd.Val(), "c|")
		}
	}
	return out, nil
}

// Mapped reports whether step name runs the items of a map.
func (p *Pipeline) Mapped(name string) bool { return mapOf(p, name) != nil }

// MapStep names the map step whose items step name runs ("" for none).
func (p *Pipeline) MapStep(name string) string {
	if m := mapOf(p, name); m != nil {
		return m.Name
	}
	return ""
}

// mapItems splits a map step's output: the field's array elements, each
// compacted (so none holds a line break), joined by "\n" for
// complete.lua; "" for an empty array.
func mapItems(s *Step, output []byte) (string, int, error) {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(output, &obj); err != nil {
		return "", 0, fmt.Errorf("%w: step %s: the output is not a JSON object with the field %q", ErrMapOutput, s.Name, s.Map)
	}
	raw, ok := obj[s.Map]
	if !ok {
		return "", 0, fmt.Errorf("%w: step %s: the output has no field %q (map)", ErrMapOutput, s.Name, s.Map)
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil || items == nil {
		return "", 0, fmt.Errorf("%w: step %s: the output field %q is not an array", ErrMapOutput, s.Name, s.Map)
	}
	if len(items) > s.MaxItems {
		return "", 0, fmt.Errorf("%w: step %s: the output field %q holds %d items, more than max_items %d", ErrMapOutput, s.Name, s.Map, len(items), s.MaxItems)
	}
	var b bytes.Buffer
	for i, it := range items {
		if i > 0 {
			b.WriteByte('\n')
		}
		if err := json.Compact(&b, it); err != nil {
			return "", 0, fmt.Errorf("%w: step %s: item %d: %w", ErrMapOutput, s.Name, i, err)
		}
	}
	return b.String(), len(items), nil
}

// ItemCounts is a mapped step's items by state, in GET /v1/tasks/{id}.
type ItemCounts map[string]int

// settledByCancel moves the counts of items that had not ended into
// cancelled, as a cancelled task shows them (settledByCancel).
func (n ItemCounts) settledByCancel() ItemCounts {
	out := ItemCounts{}
	for state, k := range n {
		out[settledByCancel(state)] += k
	}
	return out
}

// mapJoinCall is what fail.lua gets after its own arguments for a step of
// a pipeline with a map or a join policy (lua/maplib.lua, fail_mapjoin).
type mapJoinCall struct {
	args    []any
	streams []string
}

// failMapJoinCalls makes each step's mapJoinCall; nil for a pipeline
// without a map or a join policy (fail.lua then gets nothing more).
func failMapJoinCalls(p *Pipeline, joins []string) map[string]*mapJoinCall {
	if !usesMapJoin(p) {
		return nil
	}
	out := map[string]*mapJoinCall{}
	for _, name := range p.Order {
		item, release := "", ""
		if m := mapOf(p, name); m != nil {
			chain, join := mapRegion(p, m)
			if p.Steps[chain[0]].MaxParallel > 0 {
				release = chain[0]
			}
			item = m.Name + "|" + join + "|" + release
		}
		call := &mapJoinCall{args: []any{item}}
		for _, j := range joins {
			call.args = append(call.args, joinSpec(p, j))
			call.streams = append(call.streams, j)
		}
		if release != "" {
			call.streams = append(call.streams, release)
		}
		out[name] = call
	}
	return out
}
