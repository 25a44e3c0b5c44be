package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

func init() {
	register(&command{name: "submit", summary: "submit a task to a pipeline; prints its id",
		usage: "[--delay D | --at TIME] [--deadline D] PIPELINE [JSON | @FILE | -]",
		help: `Submits a payload (JSON, from the argument, a file with @, or stdin with -;
{} when none) to the newest version of PIPELINE. Prints the task id on
stdout. With --delay or --at the task is scheduled: it exists at once and
its first step runs at that time (within a second). With --deadline the
task is cancelled (reason "deadline") if it has not ended that long after
submission (or at that RFC 3339 time); its running handlers are cancelled.

Examples:
  dsat submit textstats '{"kind":"urgent","text":"disk full"}'
  dsat submit wordcount @payload.json
  echo '{"text":"hi"}' | dsat submit wordcount -
  id=$(dsat submit flaky) && dsat tail $id
  dsat submit --delay 30s textstats '{"text":"later"}'
  dsat submit --deadline 10m textstats '{"text":"now or never"}'`,
		run: runSubmit})
	register(&command{name: "status", summary: "print a task's state (JSON)", usage: "TASK_ID",
		help: "Prints the task's state as JSON: status, per-step state, result, error.\n\nExample:\n  dsat status 06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0", run: runStatus})
	register(&command{name: "cancel", summary: "cancel a task, or a pipeline's tasks that have not ended",
		usage: "TASK_ID | --pipeline P [--status S] [--since T] [--until T]",
		help: `Cancels a pending or running task; its running handlers are cancelled.
With --pipeline it cancels every task of the pipeline that is pending,
scheduled or running (or only in --status), created in [--since, --until),
1,000 per API call (POST /v1/pipelines/{name}/cancel), and prints how many.

Examples:
  dsat cancel $id
  dsat cancel --pipeline textstats --status pending`, run: runControl("cancel")})
	register(&command{name: "retry", summary: "re-drive a failed task from where it died, or all of a pipeline's",
		usage: "TASK_ID | DEAD_LETTER_ID | --failed --pipeline P [--since T] [--until T] | --dead --pipeline P",
		help: `Queues a failed task's dead tokens again, with fresh attempts. Given a
dead letter's id (1764201600123-0, as GET /v1/dead lists them), it retries
that dead letter's task. --failed --pipeline P retries every failed task of
P (created in [--since, --until)); --dead --pipeline P the task of every
dead letter of P; 1,000 per API call, and it prints how many.

Examples:
  dsat retry $id && dsat tail $id
  dsat retry 1764201600123-0
  dsat retry --failed --pipeline textstats --since 1h`, run: runControl("retry")})
}

func runSubmit(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("submit", env)
	o := addAPIFlags(fs, env)
	key := fs.String("idempotency-key", "", "Idempotency-Key header")
	delay := fs.Duration("delay", 0, "run the task this long from now (e.g. 30s, 2h; at most a year)")
	at := fs.String("at", "", "run the task at this RFC 3339 time (e.g. 2026-12-01T09:00:00Z)")
	deadline := fs.String("deadline", "", "cancel the task if it has not ended this long after submission (10m) or at this RFC 3339 time")
	if err := parse(fs, env, "submit", args); err != nil {
		return err
	}
	q := url.Values{}
	if *deadline != "" {
		if !validDeadline(*deadline) {
			return usagef("--deadline %q: want a positive duration such as 10m or an RFC 3339 time", *deadline)
		}
		q.Set("deadline", *deadline)
	}
	switch {
	case *delay < 0 || *delay != 0 && *at != "":
		return usagef("give a positive --delay or --at, not both")
	case *delay > 0:
		q.Set("delay", delay.String())
	case *at != "":
		if _, err := time.Parse(time.RFC3339Nano, *at); err != nil {
			return usagef("--at %q: want an RFC 3339 time such as 2026-12-01T09:00:00Z", *at)
		}
		q.Set("at", *at)
	}
	if fs.NArg() < 1 || fs.NArg() > 2 {
		return usagef("want a pipeline name and at most one payload")
	}
	payload := []byte("{}")
	if fs.NArg() == 2 {
		var err error
		if payload, err = readPayload(fs.Arg(1), env.stdin); err != nil {
			return err
		}
	}
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	var out struct{ ID string }
	hdr := map[string]string{}
	if *key != "" {
		hdr["Idempotency-Key"] = *key
	}
	path := "/v1/pipelines/" + url.PathEscape(fs.Arg(0)) + "/tasks"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if _, err := c.do(ctx, "POST", path, payload, hdr, &out); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, out.ID)
	return nil
}

// validDeadline reports whether v is a positive Go duration or an RFC 3339
// time (the server checks the rest).
func validDeadline(v string) bool {
	if d, err := time.ParseDuration(v); err == nil {
		return d > 0
	}
	_, err := time.Parse(time.RFC3339Nano, v)
	return err == nil
}

func readPayload(arg string, stdin io.Reader) ([]byte, error) {
	var b []byte
	var err error
	switch {
	case arg == "-":
		b, err = io.ReadAll(stdin)
	case strings.HasPrefix(arg, "@"):
		b, err = os.ReadFile(arg[1:])
	default:
		b = []byte(arg)
	}
	if err != nil {
		return nil, fmt.Errorf("read payload: %v", err)
	}
	if !json.Valid(bytes.TrimSpace(b)) {
		return nil, usagef("the payload is not valid JSON; quote it for the shell, e.g. '{\"text\":\"hi\"}'")
	}
	return bytes.TrimSpace(b), nil
}

// oneTaskID parses the flags and the single TASK_ID argument.
func oneTaskID(env *cliEnv, name string, args []string, extra func(*flag.FlagSet)) (*apiClient, string, error) {
	fs := newFlagSet(name, env)
	o := addAPIFlags(fs, env)
	if extra != nil {
		extra(fs)
	}
	if err := parse(fs, env, name, args); err != nil {
		return nil, "", err
	}
	if fs.NArg() != 1 {
		return nil, "", usagef("want one task id")
	}
	id := fs.Arg(0)
	if _, err := dsat.ParseTaskID(id); err != nil && !(name == "retry" && dsat.ValidStreamID(id)) {
		return nil, "", usagef("%v; task ids look like 06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0 (dsat submit prints them)", err)
	}
	c, err := newAPIClient(o)
	return c, id, err
}

func runStatus(ctx context.Context, env *cliEnv, args []string) error {
	c, id, err := oneTaskID(env, "status", args, nil)
	if err != nil {
		return err
	}
	var st json.RawMessage
	if _, err := c.do(ctx, "GET", "/v1/tasks/"+url.PathEscape(id), nil, nil, &st); err != nil {
		return err
	}
	var pretty bytes.Buffer
	_ = json.Indent(&pretty, st, "", "  ")
	fmt.Fprintln(env.stdout, pretty.String())
	return nil
}

func runControl(action string) func(context.Context, *cliEnv, []string) error {
	return func(ctx context.Context, env *cliEnv, args []string) error {
		if bulk, err := runBulk(ctx, env, action, args); bulk {
			return err
		}
		c, id, err := oneTaskID(env, action, args, nil)
		if err != nil {
			return err
		}
		if _, terr := dsat.ParseTaskID(id); terr != nil && action == "retry" && dsat.ValidStreamID(id) {
			task, err := deadLetterTask(ctx, c, id)
			if err != nil {
				return err
			}
			fmt.Fprintf(env.stderr, "dead letter %s is of task %s\n", id, task)
			id = task
		}
		var out map[string]any
		if _, err := c.do(ctx, "POST", "/v1/tasks/"+url.PathEscape(id)+"/"+action, []byte("{}"), nil, &out); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "%s: %v\n", id, out["status"])
		return nil
	}
}

// deadLetterTask finds the dead letter with this id among the loaded
// pipelines and returns its task's id.
func deadLetterTask(ctx context.Context, c *apiClient, id string) (string, error) {
	var ps []struct{ Name string }
	if _, err := c.do(ctx, "GET", "/v1/pipelines", nil, nil, &ps); err != nil {
		return "", err
	}
	for _, p := range ps {
		var page struct {
			Items []struct{ ID, Task string }
		}
		// The newest dead letter up to id: before is exclusive.
		q := "/v1/dead?limit=1&pipeline=" + url.QueryEscape(p.Name) + "&before=" + url.QueryEscape(dsat.NextStreamID(id))
		if _, err := c.do(ctx, "GET", q, nil, nil, &page); err != nil {
			return "", err
		}
		if len(page.Items) == 1 && page.Items[0].ID == id {
			if page.Items[0].Task == "" {
				return "", fmt.Errorf("dead letter %s names no task (its stream entry could not be read), so there is nothing to retry; its raw entry is in GET /v1/dead?pipeline=%s", id, p.Name)
			}
			return page.Items[0].Task, nil
		}
	}
	return "", fmt.Errorf("no dead letter %s in any loaded pipeline; pass a task id (a dead letter's task is its \"task\" field in GET /v1/dead and on the dashboard's Dead letters page)", id)
}
