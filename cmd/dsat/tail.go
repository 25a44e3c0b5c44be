package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

func init() {
	register(&command{name: "tail", summary: "follow a task's events live until it ends, or a pipeline's", usage: "TASK_ID | --pipeline NAME",
		help: `Prints each event of the task as a readable line as it happens (time,
seq, event, step, worker, detail), from its first event. It reconnects by
itself (resuming after the last event it printed) and exits 0 when the
task succeeds (HAPPY_END), 1 when it fails (DEAD) or is cancelled. A task
that was retried after it died shows its whole history: the old DEAD, then
what followed, up to its current end.

With --pipeline NAME instead of a task id it follows every event of the
pipeline from now on (GET /v1/events?pipeline=), each line led by its
task id, including the pipeline-level BREAKER events (a step's circuit
breaker opened, went half open or closed), until interrupted. There
--after takes an event id (such as 1765000000000-0), not a task's seq.

Examples:
  dsat tail 06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0
  dsat tail --pipeline textstats`,
		run: runTail})
}

// tailFlags adds tail's own flags.
func tailFlags(fs *flag.FlagSet) (after, pipeline *string) {
	return fs.String("after", "", "start after this event: its seq (of a task), or with --pipeline its event id (such as 1765000000000-0; a seq is refused)"),
		fs.String("pipeline", "", "follow every event of this pipeline instead of one task")
}

func runTail(ctx context.Context, env *cliEnv, args []string) error {
	var after, pipeline *string
	extra := func(fs *flag.FlagSet) { after, pipeline = tailFlags(fs) }
	// A first parse tells the two forms apart; each then parses for real.
	probe := newFlagSet("tail", env)
	addAPIFlags(probe, env)
	extra(probe)
	if probe.Parse(args) == nil && *pipeline != "" {
		if _, err := strconv.ParseUint(*after, 10, 64); err == nil {
			return usagef("--after %s: with --pipeline, --after takes an event id (such as 1765000000000-0, the id of a line printed by tail --pipeline), not a task's seq", *after)
		}
		return tailPipeline(ctx, env, args, extra, func() (string, string) { return *after, *pipeline })
	}
	c, id, err := oneTaskID(env, "tail", args, extra)
	if err != nil {
		return err
	}
	if *pipeline != "" {
		return usagef("give a task id or --pipeline, not both")
	}
	c.hc.Timeout = 0 // a stream lasts as long as the task
	last := *after
	backoff := 200 * time.Millisecond
	connected := false // the API answered once: later failures are reconnected
	var down *unreachableError
	reported := false
	for attempt := 0; ; attempt++ {
		final, err := tailOnce(ctx, c, "/v1/tasks/"+url.PathEscape(id)+"/events", &last, env.stdout, false)
		switch {
		case final == dsat.EventHappyEnd:
			return nil
		case final != "":
			return &exitError{code: 1, msg: "task ended with " + final}
		case ctx.Err() != nil:
			return &exitError{code: 1, msg: "interrupted"}
		case err != nil && errors.Is(err, errFatal):
			return err
		case errors.As(err, &down) && !connected:
			return fmt.Errorf("cannot reach the dsat API at %s: %v; is dsat serve (or dsat dev) running? set --api or DSAT_API", c.base, down.err)
		}
		if !errors.As(err, &down) {
			connected = true
		}
		if attempt >= 30 {
			return fmt.Errorf("the event stream keeps failing: %v", err)
		}
		if err != nil && !reported {
			fmt.Fprintf(env.stderr, "dsat tail: the event stream failed (%v); reconnecting\n", err)
			reported = true
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return &exitError{code: 1, msg: "interrupted"}
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

var errFatal = errors.New("fatal")

// unreachableError is a request that got no answer from the API.
type unreachableError struct{ err error }

func (e *unreachableError) Error() string { return e.err.Error() }

// tailOnce reads the stream until it ends; it returns the final event's
// name when the stream ended after one. A final event followed by more
// (a task retried after it died) is not the end: the API ends a task's
// stream after its current final event, so what counts is the last one.
// A reset that carries a finished task's state (a resume at its end)
// counts as that task's final event.
func tailOnce(ctx context.Context, c *apiClient, path string, last *string, w io.Writer, withTask bool) (string, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", c.base+path, nil)
	if err != nil {
		return "", err
	}
	if *last != "" {
		req.Header.Set("Last-Event-ID", *last)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return "", &unreachableError{err}
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		var p struct{ Detail string }
		b, _ := io.ReadAll(res.Body)
		_ = json.Unmarshal(b, &p)
		if res.StatusCode >= 500 {
			return "", fmt.Errorf("HTTP %d", res.StatusCode)
		}
		return "", fmt.Errorf("%w: %s (HTTP %d)", errFatal, p.Detail, res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var evID, name, data, lastName string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "id: "):
			evID = line[4:]
		case strings.HasPrefix(line, "event: "):
			name = line[7:]
		case strings.HasPrefix(line, "data: "):
			data = line[6:]
		case line == "" && name != "":
			if evID != "" {
				*last = evID
			}
			if withTask {
				printPipelineEvent(w, name, data)
			} else {
				printEvent(w, name, data)
			}
			lastName = name
			if name == "reset" {
				lastName = finalOfState(data)
			}
			evID, name, data = "", "", ""
		}
	}
	if err := sc.Err(); err != nil {
		return "", err
	}
	if dsat.FinalEvent(lastName) {
		return lastName, nil
	}
	return "", nil
}

// finalOfState maps a task state (a reset event's data) to the final
// event of its status, or "" while the task runs.
func finalOfState(data string) string {
	var st struct{ Status string }
	_ = json.Unmarshal([]byte(data), &st)
	switch st.Status {
	case dsat.StatusSucceeded:
		return dsat.EventHappyEnd
	case dsat.StatusFailed:
		return dsat.EventDead
	case dsat.StatusCancelled:
		return dsat.EventCancelled
	}
	return ""
}

// printEvent writes one event as a line: time, seq, event, step, worker,
// detail.
func printEvent(w io.Writer, name, data string) {
	var e dsat.Event
	if name == "reset" || json.Unmarshal([]byte(data), &e) != nil {
		fmt.Fprintf(w, "%-12s %4s  %-9s %s\n", "", "", name, data)
		return
	}
	detail := humanDetail(e.Detail)
	if e.Event == dsat.EventProgress {
		detail = progressDetail(e.Detail)
	}
	if detail == "{}" {
		detail = ""
	}
	step := e.Step
	if step != "" && e.Attempt > 1 {
		step = fmt.Sprintf("%s#%d", step, e.Attempt)
	}
	fmt.Fprintf(w, "%s %4d  %-9s %-12s %-14s %s\n", e.At.Local().Format("15:04:05.000"), e.Seq, e.Event, step, e.Worker, detail)
}

// printPipelineEvent writes one event of a pipeline feed as a line: the
// task id (or "-" for a pipeline-level event), then as printEvent.
func printPipelineEvent(w io.Writer, name, data string) {
	var e dsat.Event
	if name == "reset" || json.Unmarshal([]byte(data), &e) != nil {
		fmt.Fprintf(w, "%-12s %-9s %s\n", "", name, data)
		return
	}
	task := e.Task
	if task == "" {
		task = "-"
	}
	fmt.Fprintf(w, "%s ", task)
	if e.Event == dsat.EventBreaker {
		fmt.Fprintf(w, "%s %4s  %-9s %-12s %-14s %s\n", e.At.Local().Format("15:04:05.000"), "", e.Event, e.Step, e.Worker, breakerDetail(e.Detail))
		return
	}
	printEvent(w, name, data)
}

// breakerDetail shows a BREAKER detail as "open until 15:04:05.000".
func breakerDetail(raw json.RawMessage) string {
	var d dsat.BreakerDetail
	if json.Unmarshal(raw, &d) != nil || d.State == "" {
		return string(raw)
	}
	if d.Until == nil {
		return d.State
	}
	return d.State + " until " + d.Until.Local().Format("15:04:05.000")
}

// tailPipeline follows a pipeline's feed until interrupted, reconnecting
// (resuming after the last event printed) when the stream breaks.
// extra adds tail's flags, values reads them after parsing.
func tailPipeline(ctx context.Context, env *cliEnv, args []string, extra func(*flag.FlagSet), values func() (after, pipeline string)) error {
	fs := newFlagSet("tail", env)
	o := addAPIFlags(fs, env)
	extra(fs)
	if err := parse(fs, env, "tail", args); err != nil {
		return err
	}
	after, pipeline := values()
	if fs.NArg() != 0 || pipeline == "" {
		return usagef("give a task id or --pipeline NAME, not both")
	}
	c, err := newAPIClient(o)
	if err != nil {
		return err
	}
	c.hc.Timeout = 0
	last, backoff, connected := after, 200*time.Millisecond, false
	for attempt := 0; ctx.Err() == nil; attempt++ {
		_, err := tailOnce(ctx, c, "/v1/events?pipeline="+url.QueryEscape(pipeline), &last, env.stdout, true)
		var down *unreachableError
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil && errors.Is(err, errFatal):
			return err
		case errors.As(err, &down) && !connected:
			return fmt.Errorf("cannot reach the dsat API at %s: %v; is dsat serve (or dsat dev) running? set --api or DSAT_API", c.base, down.err)
		case err == nil:
			attempt = 0 // the server ended a healthy stream (e.g. a restart)
		}
		connected = connected || !errors.As(err, &down)
		if attempt >= 30 {
			return fmt.Errorf("the event stream keeps failing: %v", err)
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return nil
		}
		backoff = min(2*backoff, 5*time.Second)
	}
	return nil
}

// progressDetail shows a PROGRESS detail as "40% 11/54 pages".
func progressDetail(raw json.RawMessage) string {
	var d struct {
		Progress *float64 `json:"progress"`
		Message  string   `json:"message"`
	}
	if json.Unmarshal(raw, &d) != nil || d.Progress == nil {
		return string(raw)
	}
	return strings.TrimSpace(fmt.Sprintf("%.0f%% %s", *d.Progress*100, d.Message))
}

// humanDetail shows the times in an event's detail (a RETRY's due, a
// delayed INIT's run_at: ms since the epoch) as local clock times.
func humanDetail(raw json.RawMessage) string {
	var d map[string]any
	if json.Unmarshal(raw, &d) != nil {
		return string(raw)
	}
	changed := false
	for _, k := range []string{"due", "run_at"} {
		var ms int64
		switch v := d[k].(type) {
		case float64:
			ms = int64(v)
		case string:
			ms, _ = strconv.ParseInt(v, 10, 64)
		}
		if ms > 0 {
			d[k], changed = time.UnixMilli(ms).Local().Format("15:04:05.000"), true
		}
	}
	if !changed {
		return string(raw)
	}
	b, _ := json.Marshal(d)
	return string(b)
}
