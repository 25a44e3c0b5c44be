package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/httpapi"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestScheduleCommands: "dsat schedule" sets, lists, pauses, resumes and
// removes schedules through the API, with the CLI's exit codes.
func TestScheduleCommands(t *testing.T) {
	env := map[string]string{"DSAT_API": miniAPI(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")}

	if code, out, errs := runCLI(t, env, "", "schedule", "list"); code != 0 || out != "" || !strings.Contains(errs, "no schedules") {
		t.Fatalf("list with none: %d %q %q", code, out, errs)
	}
	code, out, errs := runCLI(t, env, "", "schedule", "set", "heartbeat", "--pipeline", "demo", "--every", "30s", "--payload", `{"text":"ping"}`)
	if code != 0 || !strings.HasPrefix(out, "heartbeat created: every 30s, next run ") {
		t.Fatalf("set: %d %q %q", code, out, errs)
	}
	// Flags before the id work too; a second set replaces.
	code, out, _ = runCLI(t, env, `{"n": 1}`, "schedule", "set", "--pipeline", "demo", "--cron", "0 3 * * *", "--timezone", "Europe/Paris", "--catchup", "all", "--payload", "-", "nightly")
	if code != 0 || !strings.HasPrefix(out, `nightly created: cron "0 3 * * *" Europe/Paris, next run `) {
		t.Fatalf("set nightly: %d %q", code, out)
	}
	if code, out, _ := runCLI(t, env, "", "schedule", "pause", "heartbeat"); code != 0 || out != "heartbeat paused: every 30s, paused\n" {
		t.Fatalf("pause: %d %q", code, out)
	}
	code, out, _ = runCLI(t, env, "", "schedule", "list")
	if code != 0 || !regexpMatch(`(?m)^heartbeat +demo +every 30s +one +paused +- +-$`, out) ||
		!regexpMatch(`(?m)^nightly +demo +cron "0 3 \* \* \*" Europe/Paris +all +\d{4}-\d\d-\d\d \d\d:\d\d:\d\d +- +-$`, out) {
		t.Fatalf("list: %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, env, "", "schedule", "resume", "heartbeat"); code != 0 || !strings.Contains(out, "heartbeat resumed: every 30s, next run") {
		t.Fatalf("resume: %d %q", code, out)
	}
	code, out, _ = runCLI(t, env, "", "schedule", "list", "--json")
	var list []dsat.ScheduleInfo
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 || compact(list[0].Payload) != `{"text":"ping"}` || compact(list[1].Payload) != `{"n":1}` {
		t.Fatalf("list --json: %d %s", code, out)
	}
	if code, out, errs := runCLI(t, env, "", "schedule", "rm", "heartbeat"); code != 0 || out != "" {
		t.Fatalf("rm: %d %q %q", code, out, errs)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"schedule", "rm", "heartbeat"}, 1, "schedule not found"},
		{[]string{"schedule", "set", "x", "--pipeline", "demo", "--every", "10ms"}, 1, `field "every": 10ms must be from 1s`},
		{[]string{"schedule", "set", "x", "--pipeline", "ghost", "--every", "1m"}, 1, "pipeline not found"},
		{[]string{"schedule", "set", "x", "--pipeline", "demo"}, 2, "one of --every or --cron"},
		{[]string{"schedule", "set", "x", "--pipeline", "demo", "--every", "1m", "--payload", "{"}, 2, "not valid JSON"},
		{[]string{"schedule"}, 2, "want set, list, rm"},
		{[]string{"schedule", "fire", "x"}, 2, `unknown action "fire"`},
		{[]string{"schedule", "rm"}, 2, "rm wants one schedule id"},
		{[]string{"schedule", "list", "x"}, 2, "list takes no arguments"},
		{[]string{"schedule", "pause", "x", "--nope"}, 2, "flag provided but not defined"},
	} {
		if code, _, errs := runCLI(t, env, "", tc.args...); code != tc.code || !strings.Contains(errs, tc.want) || strings.Contains(errs, "dsat: ") {
			t.Errorf("%v: exit %d %q", tc.args, code, errs)
		}
	}
}

// TestServeFiresFileSchedules: serve puts the schedules of its pipeline
// files at start and fires them (no worker runs: the task waits).
func TestServeFiresFileSchedules(t *testing.T) {
	srv := redistest.Start(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "p.yaml"), []byte("name: demo\nversion: 1.0.0\nschedules:\n  tick: {every: 1s, payload: {n: 1}}\nsteps:\n  a: {handler: echo}\n"), 0o644)
	port := redistest.FreePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int)
	go func() {
		e := &cliEnv{stdout: io.Discard, stderr: io.Discard, stdin: strings.NewReader(""), getenv: func(string) string { return "" }}
		done <- run(ctx, e, []string{"serve", "--redis", "redis://" + srv.Addr, "--pipelines", dir, "--addr", fmt.Sprintf("127.0.0.1:%d", port), "--log-format", "json"})
	}()
	t.Cleanup(func() { cancel(); <-done })
	env := map[string]string{"DSAT_API": fmt.Sprintf("http://127.0.0.1:%d", port)}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, out, _ := runCLI(t, env, "", "schedule", "list", "--json")
		var list []dsat.ScheduleInfo
		if code == 0 && json.Unmarshal([]byte(out), &list) == nil && len(list) == 1 && list[0].LastTask != "" {
			if list[0].ID != "tick" || list[0].Pipeline != "demo" || compact(list[0].Payload) != `{"n":1}` || !strings.Contains(list[0].LastTask, ".demo.1.0.") {
				t.Fatalf("schedule %+v", list[0])
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not fire its file's schedule: %d %s", code, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// compact is a JSON value on one line ("dsat schedule list --json" indents
// the payloads).
func compact(b []byte) string {
	var out bytes.Buffer
	_ = json.Compact(&out, b)
	return out.String()
}

// miniAPI serves the API for one pipeline on miniredis and returns its URL.
func miniAPI(t *testing.T, pipelineYAML string) string {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { rdb.Close() })
	p, err := dsat.ParsePipeline("p.yaml", []byte(pipelineYAML))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	api := httpapi.NewRouter(httpapi.Config{Client: c, Logger: zerolog.Nop()})
	srv := httptest.NewServer(api)
	t.Cleanup(func() { api.Close(); srv.Close() })
	return srv.URL
}
