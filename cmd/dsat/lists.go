package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

func init() {
	register(&command{name: "dead", summary: "list dead letters, newest first", usage: "[--pipeline P] [--limit N] [--before CURSOR]",
		help: `Lists dead letters (tokens that used up their attempts or could not be
read), newest first: id, time, pipeline, step, attempts, task and reason.
Without --pipeline it lists those of every loaded pipeline. Retry one with
"dsat retry <task or dead letter id>". --json prints the API's items.

Examples:
  dsat dead
  dsat dead --pipeline flaky --limit 5
  dsat retry $(dsat dead --pipeline flaky --limit 1 --json | jq -r '.[0].task')`,
		run: runDead})
	register(&command{name: "pipelines", summary: "list the pipelines the API has loaded", usage: "",
		help: `Lists the pipelines loaded by the API: name, version, partitions, entry
step and steps. --json prints the API's answer.

Example:
  dsat pipelines`,
		run: runPipelines})
}

// pipelineNames returns only, or when it is empty every pipeline the API
// has loaded.
func pipelineNames(ctx context.Context, c *apiClient, only string) ([]string, error) {
	if only != "" {
		return []string{only}, nil
	}
	var ps []struct{ Name string }
	if _, err := c.do(ctx, "GET", "/v1/pipelines", nil, nil, &ps); err != nil {
		return nil, err
	}
	names := make([]string, 0, len(ps))
	for _, p := range ps {
		names = append(names, p.Name)
	}
	return names, nil
}

func deadFlags(fs *flag.FlagSet) (pipeline *string, limit *int, before *string, asJSON *bool) {
	return fs.String("pipeline", "", "only this pipeline's dead letters (default: every loaded pipeline)"),
		fs.Int("limit", 20, "at most this many dead letters per pipeline (1 to 1000)"),
		fs.String("before", "", "only dead letters older than this cursor (the next page, with --pipeline)"),
		fs.Bool("json", false, "print JSON")
}

func runDead(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("dead", env)
	o := addAPIFlags(fs, env)
	pipeline, limit, before, asJSON := deadFlags(fs)
	if err := parse(fs, env, "dead", args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("takes no arguments; name the pipeline with --pipeline")
	}
	if *limit < 1 || *limit > 1000 {
		return usagef("--limit must be from 1 to 1000")
	}
	if *before != "" && (*pipeline == "" || !dsat.ValidStreamID(*before)) {
		return usagef("--before takes the cursor printed after a page of one --pipeline")
	}
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	names, err := pipelineNames(ctx, c, *pipeline)
	if err != nil {
		return err
	}
	items := []dsat.DeadLetter{}
	next := ""
	for _, name := range names {
		var page struct {
			Items []dsat.DeadLetter
			Next  string
		}
		q := fmt.Sprintf("/v1/dead?pipeline=%s&limit=%d", url.QueryEscape(name), *limit)
		if *before != "" {
			q += "&before=" + url.QueryEscape(*before)
		}
		if _, err := c.do(ctx, "GET", q, nil, nil, &page); err != nil {
			return err
		}
		items = append(items, page.Items...)
		next = page.Next
	}
	if *asJSON {
		b, _ := json.MarshalIndent(items, "", "  ")
		fmt.Fprintln(env.stdout, string(b))
		return nil
	}
	if len(items) == 0 {
		fmt.Fprintln(env.stderr, "no dead letters")
		return nil
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tAT\tPIPELINE\tSTEP\tATTEMPTS\tTASK\tREASON")
	for _, d := range items {
		task := d.Task
		if task == "" {
			task = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", d.ID, d.At.Local().Format(time.DateTime), d.Pipeline, d.Step, d.Attempts, task, oneLineReason(d.Reason))
	}
	tw.Flush()
	if next != "" && *pipeline != "" {
		fmt.Fprintf(env.stderr, "more: dsat dead --pipeline %s --limit %d --before %s\n", *pipeline, *limit, next)
	}
	return nil
}

// oneLineReason keeps a reason (it may carry a stderr tail) on one short line.
func oneLineReason(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > 120 {
		s = string(r[:120]) + "..."
	}
	return s
}

func runPipelines(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("pipelines", env)
	o := addAPIFlags(fs, env)
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, env, "pipelines", args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("takes no arguments")
	}
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if _, err := c.do(ctx, "GET", "/v1/pipelines", nil, nil, &raw); err != nil {
		return err
	}
	if *asJSON {
		var b bytes.Buffer
		_ = json.Indent(&b, raw, "", "  ")
		fmt.Fprintln(env.stdout, b.String())
		return nil
	}
	var ps []struct {
		Name, Version, Entry string
		Partitions           int
		Paused               bool
		Steps                []struct {
			Name   string
			Paused bool
		}
	}
	if err := json.Unmarshal(raw, &ps); err != nil {
		return fmt.Errorf("unexpected answer from /v1/pipelines: %v", err)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tVERSION\tPARTITIONS\tENTRY\tSTEPS\tPAUSED")
	for _, p := range ps {
		steps := make([]string, len(p.Steps))
		var paused []string
		for i, s := range p.Steps {
			steps[i] = s.Name
			if s.Paused {
				paused = append(paused, s.Name)
			}
		}
		pausedCol := "-"
		switch {
		case p.Paused:
			pausedCol = "all"
		case len(paused) > 0:
			pausedCol = strings.Join(paused, ",")
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\n", p.Name, p.Version, p.Partitions, p.Entry, strings.Join(steps, ","), pausedCol)
	}
	return tw.Flush()
}
