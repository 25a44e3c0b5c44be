package main

import (
	"context"
	"fmt"
	"sort"
	"strings"

	"github.com/dsat-dev/dsat/dsat"
)

func init() {
	register(&command{name: "validate", summary: "check pipeline files; prints every error", usage: "FILE...",
		help: `Checks each pipeline file and prints every problem (file:line, step,
field, what to fix). Exits 1 if any file has a problem.

Examples:
  dsat validate pipelines/*.yaml`,
		run: runValidate})
	register(&command{name: "graph", summary: "print a pipeline as Graphviz DOT", usage: "FILE",
		help: `Prints the pipeline's graph in Graphviz DOT: steps as boxes, the switch
cases as edge labels, joins as double boxes (with their policy), the steps
a map's items run as stacked boxes with how many run at once, the failure
handler (on_failure) as a dashed box, and a sub-pipeline step as a
component box linking to <pipeline>.svg (render each pipeline's file to
its own SVG).

Example:
  dsat graph examples/textstats.yaml | dot -Tsvg > textstats.svg`,
		run: runGraph})
	register(&command{name: "version", summary: "print dsat's version and the envelope format version", usage: "",
		help: "Example:\n  dsat version", run: runVersion})
}

func runValidate(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("validate", env)
	handlers := handlersFlag(fs, env)
	if err := parse(fs, env, "validate", args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usagef("name at least one pipeline file")
	}
	bad := 0
	var loaded []*dsat.Pipeline
	for _, f := range fs.Args() {
		p, err := dsat.LoadPipelineFile(f)
		if err == nil {
			err = checkHandlers([]*dsat.Pipeline{p}, *handlers)
		}
		if err == nil {
			// Schedule ids are global: one declared in an earlier file too
			// is an error of this one.
			err = dsat.ScheduleDuplicates(append(loaded, p))
		}
		if err != nil {
			bad++
			fmt.Fprintln(env.stderr, unprefixed(err.Error()))
			continue
		}
		loaded = append(loaded, p)
		steps := "steps"
		if len(p.Order) == 1 {
			steps = "step"
		}
		fmt.Fprintf(env.stdout, "%s: ok (pipeline %s %s, %d %s)\n", f, p.Name, p.Version, len(p.Order), steps)
	}
	// Sub-pipelines may cross files: a cycle among the files given is an
	// error (one named in none of them is not checked here).
	if err := dsat.SubPipelineCycles(loaded); err != nil {
		bad++
		fmt.Fprintln(env.stderr, unprefixed(err.Error()))
	}
	if bad > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%d of %d files have problems", bad, fs.NArg())}
	}
	return nil
}

func runGraph(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("graph", env)
	if err := parse(fs, env, "graph", args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usagef("name one pipeline file")
	}
	p, err := dsat.LoadPipelineFile(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprint(env.stdout, dot(p))
	return nil
}

// dot renders a pipeline in Graphviz DOT.
func dot(p *dsat.Pipeline) string {
	var b strings.Builder
	fmt.Fprintf(&b, "digraph %q {\n  rankdir=LR;\n  label=%q;\n  node [shape=box, style=rounded];\n", p.Name, p.Name+" "+p.Version.String())
	for _, name := range p.Order {
		s := p.Steps[name]
		attrs := []string{`label="` + dotEscape(name) + `\n(` + dotEscape(s.Handler) + `)"`}
		switch {
		case s.Pipeline != "": // a link to the child pipeline's own graph
			attrs = []string{`label="` + dotEscape(name) + `\n(pipeline ` + dotEscape(s.Pipeline) + `)"`, "shape=component", "style=solid",
				`URL="` + dotEscape(s.Pipeline) + `.svg"`, `tooltip="sub-pipeline: a child task of ` + dotEscape(s.Pipeline) + `"`}
		case name == p.OnFailure:
			attrs = append(attrs, "style=dashed", `xlabel="on_failure"`)
		case s.Join:
			attrs = append(attrs, "peripheries=2", `xlabel="join`+joinTag(s.JoinPolicy)+`"`)
		case s.IsSwitch():
			attrs = append(attrs, "shape=diamond", "style=solid")
		case p.MapStep(name) != "":
			// A map's items: a stack of boxes, with how many run at once
			// (max_parallel, on the first step of the chain, bounds it all).
			n := "n"
			if mp := p.Steps[p.Steps[p.MapStep(name)].Next[0]].MaxParallel; mp > 0 {
				n = fmt.Sprint(mp, " at once")
			}
			attrs = append(attrs, "shape=box3d", "style=solid", `xlabel="×`+n+`"`)
		}
		if name == p.Entry {
			attrs = append(attrs, "penwidth=2")
		}
		fmt.Fprintf(&b, "  %q [%s];\n", name, strings.Join(attrs, ", "))
	}
	for _, name := range p.Order {
		s := p.Steps[name]
		for _, t := range s.Next {
			style := ""
			if len(s.Next) > 1 {
				style = ` [label="fan-out"]`
			} else if s.Map != "" {
				style = ` [label="map ` + dotEscape(s.Map) + `", style=bold]`
			}
			fmt.Fprintf(&b, "  %q -> %q%s;\n", name, t, style)
		}
		labels := make([]string, 0, len(s.Routes))
		for l := range s.Routes {
			labels = append(labels, l)
		}
		sort.Strings(labels)
		for _, l := range labels {
			for _, t := range s.Routes[l] {
				fmt.Fprintf(&b, "  %q -> %q [label=%q];\n", name, t, l)
			}
		}
	}
	b.WriteString("}\n")
	return b.String()
}

// joinTag is a join's policy as dot shows it ("" for all).
func joinTag(policy string) string {
	if policy == "" || policy == dsat.JoinAll {
		return ""
	}
	return " " + policy
}

// dotEscape escapes text for a quoted DOT string.
func dotEscape(s string) string {
	return strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", " ").Replace(s)
}

func runVersion(ctx context.Context, env *cliEnv, args []string) error {
	fmt.Fprintf(env.stdout, "dsat %s (envelope format %s)\n", Version, dsat.EnvelopeVersion.API())
	return nil
}
