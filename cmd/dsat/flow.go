package main

import (
	"context"
	"flag"
	"fmt"
	"net/url"
)

func init() {
	for _, action := range []string{"pause", "resume"} {
		summary, help := "pause a pipeline or one of its steps", `Pauses a pipeline (every step) or, with --step, one of its steps: within
about a second the workers begin no new token of it; running handlers
finish; submissions are still accepted and wait. "dsat resume" undoes it
(a step resumed while its whole pipeline is paused stays paused).
"dsat pipelines" shows what is paused.

Examples:
  dsat pause textstats
  dsat pause --step lang textstats
  dsat resume textstats`
		if action == "resume" {
			summary, help = "resume a paused pipeline or step", `Resumes what "dsat pause" paused: the pipeline, or with --step one step.

Examples:
  dsat resume textstats
  dsat resume --step lang textstats`
		}
		register(&command{name: action, summary: summary, usage: "[--step STEP] PIPELINE", help: help, run: runPause(action)})
	}
}

func runPause(action string) func(context.Context, *cliEnv, []string) error {
	return func(ctx context.Context, env *cliEnv, args []string) error {
		fs := newFlagSet(action, env)
		o := addAPIFlags(fs, env)
		step := fs.String("step", "", "only this step of the pipeline")
		if err := parse(fs, env, action, args); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return usagef("want one pipeline name")
		}
		stepSet := false
		fs.Visit(func(f *flag.Flag) { stepSet = stepSet || f.Name == "step" })
		if stepSet && *step == "" {
			return usagef("--step is empty: name a step, or leave --step out to %s the whole pipeline", action)
		}
		c, err := newAPIClient(o)
		if err != nil {
			return err
		}
		path := "/v1/pipelines/" + url.PathEscape(fs.Arg(0)) + "/" + action
		if *step != "" {
			path += "?step=" + url.QueryEscape(*step)
		}
		var out struct {
			Pipeline, Step string
			Paused         bool
		}
		if _, err := c.do(ctx, "POST", path, []byte("{}"), nil, &out); err != nil {
			return err
		}
		what := out.Pipeline
		if out.Step != "" {
			what += "/" + out.Step
		}
		state := "running"
		if out.Paused {
			state = "paused"
		}
		fmt.Fprintf(env.stdout, "%s: %s\n", what, state)
		return nil
	}
}
