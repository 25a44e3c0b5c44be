package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/workers"
)

func init() {
	register(&command{name: "schedule", summary: "create, list, pause, resume and delete schedules",
		usage: "set|list|rm|pause|resume [flags] [ID]",
		help: `Manages the schedules the API stores: each submits one task of a pipeline
per slot, fired by whichever dsat serve, worker or dev process comes first
(one task per slot however many run).

  set ID      create or replace: --pipeline and --every or --cron
              (--timezone), optional --payload, --catchup, --jitter, --paused
  list        every schedule with its next and last run (--json)
  rm ID       delete
  pause ID    stop the firings; resume ID starts again at the next slot

Examples:
  dsat schedule set heartbeat --pipeline textstats --every 30s --payload '{"text":"ping"}'
  dsat schedule set nightly --pipeline wordcount --cron "0 3 * * *" --timezone Europe/Paris --catchup all
  dsat schedule list
  dsat schedule pause nightly
  dsat schedule rm heartbeat`,
		run: runSchedule})
}

// scheduleOpts are the flags of "dsat schedule".
type scheduleOpts struct {
	pipeline, every, cron, timezone, payload, catchup, jitter *string
	paused, asJSON                                            *bool
}

func scheduleFlags(fs *flag.FlagSet) *scheduleOpts {
	return &scheduleOpts{
		pipeline: fs.String("pipeline", "", "set: the pipeline each slot's task runs"),
		every:    fs.String("every", "", "set: a slot every this long (a Go duration from 1s, e.g. 30s, 1h), counted from the Unix epoch"),
		cron:     fs.String("cron", "", `set: a cron expression (minute hour day month weekday, e.g. "*/5 * * * *", or @daily)`),
		timezone: fs.String("timezone", "", "set: the IANA time zone of --cron (default UTC)"),
		payload:  fs.String("payload", "", "set: each task's payload: JSON, @FILE or - for stdin (default {})"),
		catchup:  fs.String("catchup", "", "set: missed slots: none, one (default) or all"),
		jitter:   fs.String("jitter", "", "set: delay each slot by up to this long (e.g. 10s)"),
		paused:   fs.Bool("paused", false, "set: create it paused"),
		asJSON:   fs.Bool("json", false, "list: print JSON"),
	}
}

func runSchedule(ctx context.Context, env *cliEnv, args []string) error {
	if len(args) == 0 {
		return usagef("want set, list, rm, pause or resume")
	}
	verb := args[0]
	fs := newFlagSet("schedule", env)
	o := addAPIFlags(fs, env)
	so := scheduleFlags(fs)
	pos, err := parseInterspersed(fs, env, args[1:])
	if err != nil {
		return err
	}
	want := 1
	if verb == "list" {
		want = 0
	}
	switch verb {
	case "set", "list", "rm", "pause", "resume":
	default:
		return usagef("unknown action %q: want set, list, rm, pause or resume", verb)
	}
	if len(pos) != want {
		if want == 0 {
			return usagef("list takes no arguments")
		}
		return usagef("%s wants one schedule id", verb)
	}
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	switch verb {
	case "list":
		return listSchedules(ctx, env, c, *so.asJSON)
	case "set":
		return setSchedule(ctx, env, c, pos[0], so)
	case "rm":
		_, err := c.do(ctx, "DELETE", "/v1/schedules/"+url.PathEscape(pos[0]), nil, nil, nil)
		return err
	}
	var info dsat.ScheduleInfo
	if _, err := c.do(ctx, "POST", "/v1/schedules/"+url.PathEscape(pos[0])+"/"+verb, nil, nil, &info); err != nil {
		return err
	}
	printSchedule(env, info, verb+"d")
	return nil
}

// parseInterspersed parses flags that may come before and after the
// positional arguments ("set nightly --every 1m" and "set --every 1m
// nightly"), which it returns.
func parseInterspersed(fs *flag.FlagSet, env *cliEnv, args []string) ([]string, error) {
	if err := parse(fs, env, "schedule", args); err != nil {
		return nil, err
	}
	return fs.Args(), nil
}

func setSchedule(ctx context.Context, env *cliEnv, c *apiClient, id string, so *scheduleOpts) error {
	if *so.pipeline == "" || (*so.every == "") == (*so.cron == "") {
		return usagef("set wants --pipeline and one of --every or --cron")
	}
	body := map[string]any{"pipeline": *so.pipeline, "every": *so.every, "cron": *so.cron, "timezone": *so.timezone,
		"catchup": *so.catchup, "jitter": *so.jitter, "paused": *so.paused}
	if *so.payload != "" {
		p, err := readPayload(*so.payload, env.stdin)
		if err != nil {
			return err
		}
		body["payload"] = json.RawMessage(p)
	}
	b, _ := json.Marshal(body)
	var info dsat.ScheduleInfo
	code, err := c.do(ctx, "PUT", "/v1/schedules/"+url.PathEscape(id), b, nil, &info)
	if err != nil {
		return err
	}
	what := "updated"
	if code == 201 {
		what = "created"
	}
	printSchedule(env, info, what)
	return nil
}

// printSchedule says what an action did and when the schedule runs next.
func printSchedule(env *cliEnv, info dsat.ScheduleInfo, what string) {
	next := "paused"
	if !info.NextRunAt.IsZero() {
		next = "next run " + info.NextRunAt.Local().Format(time.DateTime)
	}
	fmt.Fprintf(env.stdout, "%s %s: %s, %s\n", info.ID, what, when(info.ScheduleSpec), next)
}

// when is a schedule's timing in words.
func when(s dsat.ScheduleSpec) string {
	if s.Cron != "" {
		return fmt.Sprintf("cron %q %s", s.Cron, s.Timezone)
	}
	return "every " + s.Every
}

func listSchedules(ctx context.Context, env *cliEnv, c *apiClient, asJSON bool) error {
	var list []dsat.ScheduleInfo
	if _, err := c.do(ctx, "GET", "/v1/schedules", nil, nil, &list); err != nil {
		return err
	}
	if asJSON {
		b, _ := json.MarshalIndent(list, "", "  ")
		fmt.Fprintln(env.stdout, string(b))
		return nil
	}
	if len(list) == 0 {
		fmt.Fprintln(env.stderr, "no schedules")
		return nil
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tPIPELINE\tWHEN\tCATCHUP\tNEXT RUN\tLAST RUN\tLAST TASK")
	local := func(t dsat.Time, none string) string {
		if t.IsZero() {
			return none
		}
		return t.Local().Format(time.DateTime)
	}
	for _, s := range list {
		task := s.LastTask
		if task == "" {
			task = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.ID, s.Pipeline, when(s.ScheduleSpec), s.Catchup,
			local(s.NextRunAt, "paused"), local(s.LastRunAt, "-"), task)
	}
	return tw.Flush()
}

// upsertFileSchedules puts the schedules the pipeline files declare (serve
// and dev, at start); one that exists keeps its paused state.
func upsertFileSchedules(ctx context.Context, c *dsat.Client, ps []*dsat.Pipeline, log zerolog.Logger) error {
	var specs []dsat.ScheduleSpec
	for _, p := range ps {
		specs = append(specs, p.Schedules...)
	}
	if len(specs) == 0 {
		return nil
	}
	if err := c.UpsertSchedules(ctx, specs); err != nil {
		return fmt.Errorf("put the pipeline files' schedules: %w", err)
	}
	log.Info().Int("schedules", len(specs)).Msg("schedules of the pipeline files put")
	return nil
}

// startScheduler runs the loop that fires due schedules (serve, worker and
// dev all do); stop it with its Stop.
func startScheduler(ctx context.Context, c *dsat.Client, log zerolog.Logger) (*workers.Scheduler, error) {
	s := workers.NewScheduler(c, workers.SchedulerConfig{Logger: log})
	return s, s.Start(ctx)
}
