package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// Task search and bulk actions (issue 18): dsat tasks, and the bulk forms
// of dsat retry (--failed, --dead) and dsat cancel (--pipeline).

func init() {
	register(&command{name: "tasks", summary: "list tasks, newest first, by pipeline, status and time",
		usage: "[--pipeline P] [--status S[,S]] [--since T] [--until T] [--limit N] [--cursor C | --all] [--json]",
		help: `Lists tasks from the task indexes (GET /v1/tasks), newest first: a line
per task (id, status, created) or, with --json, one JSON object per line.
--since and --until take an RFC 3339 time or a duration back from now
(1h). One page of --limit tasks; the command to continue is printed on
stderr, or --all follows every page.

Examples:
  dsat tasks --pipeline textstats --status failed
  dsat tasks --status pending,running --since 1h --json
  dsat tasks --pipeline textstats --all --json | jq -r .id`,
		run: runTasks})
}

// searchFlags are the filters that dsat tasks and the bulk actions share.
type searchFlags struct {
	pipeline, status, since, until, cursor *string
}

func addSearchFlags(fs *flag.FlagSet, status string) *searchFlags {
	f := &searchFlags{pipeline: fs.String("pipeline", "", "only this pipeline's tasks")}
	if status != "" {
		f.status = fs.String("status", "", status)
	}
	f.since = fs.String("since", "", "only tasks created at or after this RFC 3339 time, or this long ago (1h)")
	f.until = fs.String("until", "", "only tasks created before this RFC 3339 time, or this long ago")
	f.cursor = fs.String("cursor", "", "continue from this cursor (printed after a page)")
	return f
}

// query returns the filters as URL query parameters.
func (f *searchFlags) query(now time.Time) (url.Values, error) {
	q := url.Values{}
	if f.status != nil && *f.status != "" {
		q.Set("status", *f.status)
	}
	for name, v := range map[string]string{"since": *f.since, "until": *f.until} {
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			v = now.Add(-d).UTC().Format(time.RFC3339Nano)
		} else if _, err := time.Parse(time.RFC3339Nano, v); err != nil {
			return nil, usagef("--%s %q: want an RFC 3339 time (2026-12-01T09:00:00Z) or a duration (1h)", name, v)
		}
		q.Set(name, v)
	}
	if *f.cursor != "" {
		q.Set("cursor", *f.cursor)
	}
	return q, nil
}

func runTasks(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("tasks", env)
	o := addAPIFlags(fs, env)
	f := addSearchFlags(fs, "only tasks in this status: pending, scheduled, running, succeeded, failed, cancelled (several comma-separated)")
	limit := fs.Int("limit", 100, "tasks per page (1 to 1000)")
	all := fs.Bool("all", false, "follow every page")
	asJSON := fs.Bool("json", false, "print one JSON object per task and line")
	if err := parse(fs, env, "tasks", args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usagef("takes no arguments; filter with --pipeline and --status")
	}
	if *limit < 1 || *limit > dsat.MaxSearchLimit {
		return usagef("--limit must be from 1 to %d", dsat.MaxSearchLimit)
	}
	q, err := f.query(time.Now())
	if err != nil {
		return err
	}
	if *f.pipeline != "" {
		q.Set("pipeline", *f.pipeline)
	}
	q.Set("limit", strconv.Itoa(*limit))
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	n := 0
	for {
		var page struct {
			Items []json.RawMessage `json:"items"`
			Next  *string           `json:"next"`
		}
		if _, err := c.do(ctx, "GET", "/v1/tasks?"+q.Encode(), nil, nil, &page); err != nil {
			return err
		}
		for _, raw := range page.Items {
			n++
			if *asJSON {
				fmt.Fprintln(env.stdout, string(raw))
				continue
			}
			var t dsat.TaskSummary
			if err := json.Unmarshal(raw, &t); err != nil {
				return fmt.Errorf("read the API's answer: %v", err)
			}
			if n == 1 {
				fmt.Fprintln(tw, "ID\tSTATUS\tCREATED")
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.ID, t.Status, t.CreatedAt.Local().Format("2006-01-02 15:04:05.000"))
		}
		tw.Flush()
		if page.Next == nil {
			break
		}
		q.Set("cursor", *page.Next)
		if !*all {
			fmt.Fprintf(env.stderr, "more: dsat tasks %s\n", strings.Join(searchArgs(q), " "))
			break
		}
	}
	if n == 0 && !*asJSON {
		fmt.Fprintln(env.stderr, "no tasks")
	}
	return nil
}

// searchArgs turns query parameters back into flags (to print the command
// of the next page).
func searchArgs(q url.Values) []string {
	var out []string
	for _, k := range []string{"pipeline", "status", "since", "until", "limit", "cursor"} {
		if v := q.Get(k); v != "" {
			out = append(out, "--"+k, v)
		}
	}
	return out
}

// bulkAction calls a bulk action until its next is null (or once, with
// --cursor given) and returns the total count.
func bulkAction(ctx context.Context, c *apiClient, path string, q url.Values, cursorParam string) (int, error) {
	total := 0
	once := q.Get(cursorParam) != ""
	for {
		var res struct {
			Count int     `json:"count"`
			Next  *string `json:"next"`
		}
		p := path
		if len(q) > 0 {
			p += "?" + q.Encode()
		}
		if _, err := c.do(ctx, "POST", p, []byte("{}"), nil, &res); err != nil {
			return total, err
		}
		total += res.Count
		if res.Next == nil || once {
			return total, nil
		}
		q.Set(cursorParam, *res.Next)
	}
}

// runBulk runs the bulk form of retry (--failed or --dead) or cancel
// (--pipeline); bulk is false when the command was given a task id.
func runBulk(ctx context.Context, env *cliEnv, action string, args []string) (bulk bool, err error) {
	fs := newFlagSet(action, env)
	o := addAPIFlags(fs, env)
	var failed, dead *bool
	status := ""
	if action == "retry" {
		failed = fs.Bool("failed", false, "retry every failed task of --pipeline")
		dead = fs.Bool("dead", false, "retry the task of every dead letter of --pipeline")
	} else {
		status = "only tasks in this status: pending, scheduled or running (several comma-separated; default all three)"
	}
	f := addSearchFlags(fs, status)
	if err := parse(fs, env, action, args); err != nil {
		return true, err
	}
	switch {
	case action == "retry" && !*failed && !*dead, action == "cancel" && *f.pipeline == "":
		return false, nil
	case fs.NArg() != 0:
		return true, usagef("give a task id or --pipeline, not both")
	case *f.pipeline == "":
		return true, usagef("--failed and --dead need --pipeline")
	case action == "retry" && *failed && *dead:
		return true, usagef("give --failed or --dead, not both")
	}
	q, err := f.query(time.Now())
	if err != nil {
		return true, err
	}
	c, err := newAPIClient(o)
	if err != nil {
		return true, err
	}
	base := "/v1/pipelines/" + url.PathEscape(*f.pipeline)
	var n int
	var what string
	switch {
	case action == "cancel":
		n, err = bulkAction(ctx, c, base+"/cancel", q, "cursor")
		what = "cancelled"
	case *dead:
		if len(q) > 0 {
			return true, usagef("--dead takes no --since, --until or --cursor")
		}
		n, err = bulkAction(ctx, c, base+"/dead/retry", q, "before")
		what = "retried (dead letters)"
	default:
		n, err = bulkAction(ctx, c, base+"/retry-failed", q, "cursor")
		what = "retried"
	}
	if err == nil || n > 0 { // after an error, only the calls that did act are worth a line
		fmt.Fprintf(env.stdout, "%s: %d tasks %s\n", *f.pipeline, n, what)
	}
	return true, err
}

// bulkFlags registers the flags of the bulk forms (for the README check).
func bulkFlags(fs *flag.FlagSet, action string) {
	if action == "retry" {
		fs.Bool("failed", false, "")
		fs.Bool("dead", false, "")
		addSearchFlags(fs, "")
	} else {
		addSearchFlags(fs, "status")
	}
}
