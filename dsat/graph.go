package dsat

import (
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// graph checks the edges of p: targets exist, every step is reachable from
// the entry, there is no cycle, and each join has two or more predecessors.
func (l *loader) graph(p *Pipeline, lines map[string]int, entryNode *yaml.Node) {
	if p.Entry != "" {
		if _, ok := p.Steps[p.Entry]; !ok {
			line := 0
			if entryNode != nil {
				line = entryNode.Line
			}
			l.add(line, "", "entry", fmt.Sprintf("names %q, which is not a step", p.Entry))
			return
		}
	}
	ok := true
	for _, name := range p.Order {
		s := p.Steps[name]
		check := func(field string, targets []string) {
			for _, t := range targets {
				switch _, exists := p.Steps[t]; {
				case t == name:
					l.add(lines[name], name, field, "a step cannot send to itself (cycle)")
					ok = false
				case !exists:
					l.add(lines[name], name, field, fmt.Sprintf("unknown target step %q", t))
					ok = false
				}
			}
		}
		check("next", s.Next)
		for _, label := range sortedKeys(s.Routes) {
			check("routes."+label, s.Routes[label])
		}
	}
	if !ok || p.Entry == "" {
		return
	}
	for _, name := range p.Order {
		for _, t := range p.Steps[name].Targets() {
			p.Steps[t].Preds = appendUnique(p.Steps[t].Preds, name)
		}
	}
	if cycle := findCycle(p); cycle != nil {
		l.add(lines[cycle[0]], cycle[0], "next", "cycle: "+strings.Join(cycle, " -> "))
		return
	}
	reach := map[string]bool{}
	var walk func(string)
	walk = func(n string) {
		if reach[n] {
			return
		}
		reach[n] = true
		for _, t := range p.Steps[n].Targets() {
			walk(t)
		}
	}
	walk(p.Entry)
	for _, name := range p.Order {
		s := p.Steps[name]
		if !reach[name] && name != p.OnFailure {
			l.add(lines[name], name, "", fmt.Sprintf("unreachable from the entry step %q", p.Entry))
		}
		l.mapGraph(p, s)
		if s.Join && len(s.Preds) < 2 && !l.belowMap(p, s) {
			l.add(lines[name], name, "join", fmt.Sprintf("a join needs two or more predecessor steps, has %d", len(s.Preds)))
		}
	}
}

func appendUnique(list []string, s string) []string {
	if contains(list, s) {
		return list
	}
	return append(list, s)
}

// findCycle returns the steps of one cycle, or nil.
func findCycle(p *Pipeline) []string {
	var found []string
	walkCycles(p.Order, func(n string) []string { return p.Steps[n].Targets() }, func(_ string, _ int, cycle []string) bool {
		found = cycle
		return true
	})
	return found
}

// walkCycles walks a graph depth first from each of nodes in turn, and
// calls back for each edge that closes a cycle: from the node, i the
// edge's index in out(from), cycle the nodes from the edge's target to
// from and the target again. back returns true to stop the walk.
func walkCycles(nodes []string, out func(n string) []string, back func(from string, i int, cycle []string) bool) {
	const (
		white = iota
		grey
		black
	)
	color := map[string]int{}
	var stack []string
	var visit func(string) bool
	visit = func(n string) bool {
		color[n] = grey
		stack = append(stack, n)
		for i, t := range out(n) {
			switch color[t] {
			case grey:
				j := len(stack) - 1
				for stack[j] != t {
					j--
				}
				if back(n, i, append(append([]string{}, stack[j:]...), t)) {
					return true
				}
			case white:
				if visit(t) {
					return true
				}
			}
		}
		stack = stack[:len(stack)-1]
		color[n] = black
		return false
	}
	for _, n := range nodes {
		if color[n] == white && visit(n) {
			return
		}
	}
}
