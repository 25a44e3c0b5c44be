package dsat

import (
	"fmt"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Issue 17's failure handlers (on_failure; docs/design.md, "Routers"):
// the scripts queue the handler's token where they would write DEAD
// (lib.lua, on_failure). A pipeline without one pays nothing: its script
// calls carry no extra key or argument.

// withOnFailure gives complete.lua the failure handler of p, if it has one:
// its ARGV[11] becomes "<T>f", then the handler's name follows the targets
// and its stream the target streams.
func (cp *compiled) withOnFailure() {
	h := cp.p.OnFailure
	if h == "" {
		return
	}
	for name, args := range cp.routeArg {
		args[4] = strconv.Itoa(args[4].(int)) + "f"
		cp.routeArg[name] = append(args, h)
		cp.streams[name] = append(cp.streams[name], h)
	}
}

// onFailureArgs is fail.lua's KEYS[7] and ARGV[18] ("f:<step>") for a
// pipeline with a failure handler (none without); the map and join
// arguments follow them.
func (c *Client) onFailureArgs(cp *compiled, p Partition, keys []string, args []any) ([]string, []any) {
	if h := cp.p.OnFailure; h != "" {
		keys = append(keys, c.keys.Step(p, h))
		args = append(args, "f:"+h)
	}
	return keys, args
}

// onFailure checks the pipeline's on_failure: a step nothing sends to,
// not the entry, that ends there (no next, routes or join).
func (l *loader) onFailure(p *Pipeline, n *yaml.Node) {
	if n == nil {
		return
	}
	s, ok := p.Steps[p.OnFailure]
	switch {
	case p.OnFailure == "":
		return
	case !ok:
		l.add(n.Line, "", "on_failure", fmt.Sprintf("names %q, which is not a step; declare the failure handler under steps", p.OnFailure))
	case p.OnFailure == p.Entry:
		l.add(n.Line, "", "on_failure", fmt.Sprintf("names the entry step %q; the failure handler must be a step of its own that nothing else reaches", p.OnFailure))
	case len(s.Preds) > 0:
		l.add(n.Line, "", "on_failure", fmt.Sprintf("names %q, which %s sends to; the failure handler must be a step that nothing else reaches", p.OnFailure, strings.Join(s.Preds, ", ")))
	case len(s.Next) > 0 || s.IsSwitch() || s.Join:
		l.add(s.Line, p.OnFailure, "on_failure", "the failure handler ends the task: it has no next, routes or join")
	case s.Pipeline != "":
		l.add(s.Line, p.OnFailure, "on_failure", "the failure handler runs a handler, not a sub-pipeline")
	}
}
