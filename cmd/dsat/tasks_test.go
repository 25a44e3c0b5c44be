package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// sseServer answers every task feed with the given events, then ends the
// stream (as the API does after a task's current final event).
func sseServer(t *testing.T, events ...string) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i, ev := range events {
			name, data, _ := strings.Cut(ev, " ")
			if data == "" {
				data = fmt.Sprintf(`{"seq":%d,"event":%q,"at":"2026-11-29T10:00:00.000Z"}`, i+1, name)
			}
			fmt.Fprintf(w, "id: 1-%d\nevent: %s\ndata: %s\n\n", i, name, data)
		}
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// TestTailGoesPastAnOldEnd: a task that died and was retried replays DEAD
// and more; tail follows it to the stream's end and exits by the last
// final event (issue 13, item 6).
func TestTailGoesPastAnOldEnd(t *testing.T) {
	api := sseServer(t, "INIT", "ERROR", "DEAD", "RETRY", "ACK", "END", "HAPPY_END")
	code, out, errs := runCLI(t, map[string]string{"DSAT_API": api}, "", "tail", "06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0")
	if code != 0 || !strings.Contains(out, "DEAD") || !strings.HasSuffix(strings.TrimSpace(out), "HAPPY_END") {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	// A resume at a finished task's end gets its state as a reset.
	api = sseServer(t, `reset {"status":"failed"}`)
	if code, out, errs := runCLI(t, map[string]string{"DSAT_API": api}, "", "tail", "06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0"); code != 1 || !strings.Contains(errs, "task ended with DEAD") {
		t.Fatalf("reset of a failed task: exit %d\n%s%s", code, out, errs)
	}
}

// TestRetryDeadLetterID: dsat retry accepts a dead letter's id and retries
// its task; an id of no dead letter says which id to pass.
func TestRetryDeadLetterID(t *testing.T) {
	ctx := context.Background()
	c, rdb, api := apiOnMiniredis(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
	s, err := c.Submit(ctx, "demo", []byte(`{}`), dsat.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tid, _ := dsat.ParseTaskID(s.ID)
	msgs, _ := rdb.XRange(ctx, c.Keys().Step(tid.Partition, "a"), "-", "+").Result()
	env, err := dsat.ParseEnvelope(msgs[0].Values, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Fail(ctx, dsat.Delivery{Envelope: env, EntryID: msgs[0].ID, Worker: "w"}, dsat.Failure{Message: "broken", Final: true}); err != nil {
		t.Fatal(err)
	}
	dead, _, err := c.Dead(ctx, "demo", "", 10)
	if err != nil || len(dead) != 1 {
		t.Fatalf("dead letters %v %v", dead, err)
	}
	cliEnv := map[string]string{"DSAT_API": api}
	code, out, errs := runCLI(t, cliEnv, "", "retry", dead[0].ID)
	if code != 0 || !strings.Contains(out, s.ID+": running") || !strings.Contains(errs, "dead letter "+dead[0].ID+" is of task "+s.ID) {
		t.Fatalf("retry by dead letter id: exit %d\n%s%s", code, out, errs)
	}
	if st, _ := c.Get(ctx, s.ID); st.Status != dsat.StatusRunning && st.Status != dsat.StatusPending {
		t.Fatalf("task after retry: %s", st.Status)
	}
	code, _, errs = runCLI(t, cliEnv, "", "retry", "1-0")
	if code != 1 || !strings.Contains(errs, "no dead letter 1-0") || !strings.Contains(errs, "pass a task id") {
		t.Fatalf("unknown dead letter id: exit %d %s", code, errs)
	}
	// The API says the same to other clients.
	res, err := http.Post(api+"/v1/tasks/"+dead[0].ID+"/retry", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 400 || !strings.Contains(string(b), "is a dead letter's id, not a task id") {
		t.Fatalf("POST retry with a dead letter id: %d %s", res.StatusCode, b)
	}
}

// TestTailShowsTimes: a RETRY's due time (and a delayed INIT's run_at)
// print as clock times, not milliseconds since the epoch.
func TestTailShowsTimes(t *testing.T) {
	due := time.Date(2026, 11, 29, 9, 30, 15, 250e6, time.Local)
	var b strings.Builder
	printEvent(&b, "RETRY", fmt.Sprintf(`{"task":"t","seq":4,"event":"RETRY","step":"a","attempt":1,"at":"2026-11-29T09:30:14Z","detail":{"attempt":2,"due":"%d"}}`, due.UnixMilli()))
	if !strings.Contains(b.String(), `"due":"09:30:15.250"`) {
		t.Fatalf("tail line: %q", b.String())
	}
	b.Reset()
	printEvent(&b, "END", `{"task":"t","seq":5,"event":"END","step":"a","attempt":1,"at":"2026-11-29T09:30:14Z","detail":{"x":1}}`)
	if !strings.Contains(b.String(), `{"x":1}`) {
		t.Fatalf("other details must stay as they are: %q", b.String())
	}
}

// TestTailShowsProgress: a PROGRESS event prints as a percentage and its
// message.
func TestTailShowsProgress(t *testing.T) {
	var b strings.Builder
	printEvent(&b, "PROGRESS", `{"task":"t","seq":3,"event":"PROGRESS","step":"pages","attempt":1,"worker":"w1","at":"2026-11-29T09:30:14Z","detail":{"progress":0.4,"message":"11/54 pages"}}`)
	if !strings.Contains(b.String(), "PROGRESS  pages        w1             40% 11/54 pages\n") {
		t.Fatalf("tail line: %q", b.String())
	}
}

// TestTailPipeline: tail --pipeline follows the pipeline's feed, shows
// each event with its task id and a BREAKER event's state, and resumes
// after the last event it printed when the stream ends.
func TestTailPipeline(t *testing.T) {
	var calls atomic.Int32
	var resumed atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/events" || r.URL.Query().Get("pipeline") != "demo" {
			http.Error(w, "wrong path "+r.URL.String(), 500)
			return
		}
		if calls.Add(1) > 1 {
			resumed.Store(r.Header.Get("Last-Event-ID"))
			w.Header().Set("Content-Type", "application/problem+json")
			w.WriteHeader(404)
			fmt.Fprint(w, `{"detail":"no pipeline demo (the test's end)"}`)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "id: 5-0\nevent: BREAKER\ndata: {\"task\":\"\",\"pipeline\":\"demo\",\"seq\":0,\"event\":\"BREAKER\",\"step\":\"charge\",\"worker\":\"sat-1\",\"at\":\"2026-11-29T10:00:00.000Z\",\"detail\":{\"state\":\"open\",\"until\":\"2026-11-29T10:00:30.000Z\"}}\n\n")
		fmt.Fprint(w, "id: 6-0\nevent: INIT\ndata: {\"task\":\"06h1ki9ia4001ttg3m6qbao188.demo.1.0.0\",\"pipeline\":\"demo\",\"seq\":1,\"event\":\"INIT\",\"at\":\"2026-11-29T10:00:01.000Z\"}\n\n")
	}))
	t.Cleanup(srv.Close)
	// --api before --pipeline: a flag's value is not taken for a task id.
	code, out, errs := runCLI(t, nil, "", "tail", "--api", srv.URL, "--pipeline", "demo")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code == 0 || len(lines) != 2 || !strings.Contains(errs, "the test's end") || resumed.Load() != "6-0" {
		t.Fatalf("exit %d, resumed after %v\n%s%s", code, resumed.Load(), out, errs)
	}
	until := time.Date(2026, 11, 29, 10, 0, 30, 0, time.UTC).Local().Format("15:04:05.000")
	if !strings.HasPrefix(lines[0], "- ") || !strings.Contains(lines[0], "BREAKER") || !strings.Contains(lines[0], "charge") ||
		!strings.Contains(lines[0], "sat-1") || !strings.HasSuffix(lines[0], "open until "+until) {
		t.Fatalf("BREAKER line %q", lines[0])
	}
	if !strings.HasPrefix(lines[1], "06h1ki9ia4001ttg3m6qbao188.demo.1.0.0 ") || !strings.Contains(lines[1], "INIT") {
		t.Fatalf("task event line %q", lines[1])
	}
	if code, _, errs := runCLI(t, map[string]string{"DSAT_API": srv.URL}, "", "tail", "--pipeline", "demo", "06h1ki9ia4001ttg3m6qbao188.demo.1.0.0"); code != 2 || !strings.Contains(errs, "not both") {
		t.Fatalf("a task id and --pipeline: exit %d %s", code, errs)
	}
}
