package main

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// checkTail runs submit, tail and status against an API and checks the
// printed events and the final result.
func checkTail(t *testing.T, api string) {
	t.Helper()
	env := []string{"DSAT_API=" + api}
	code, id, stderr := cli(t, env, "submit", "textstats", `{"kind":"urgent","text":"disk full"}`)
	id = strings.TrimSpace(id)
	if code != 0 || !strings.Contains(id, ".textstats.1.0.") {
		t.Fatalf("submit: %d %q %s", code, id, stderr)
	}
	code, out, stderr := cli(t, env, "tail", id)
	if code != 0 {
		t.Fatalf("tail exit %d: %s %s", code, out, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 18 || !strings.Contains(lines[0], "INIT") || !strings.Contains(lines[17], "HAPPY_END") {
		t.Fatalf("tail printed %d lines:\n%s", len(lines), out)
	}
	if !strings.Contains(out, `"route":"urgent"`) || !strings.Contains(out, `"join":[`) {
		t.Fatalf("tail misses the switch or the join:\n%s", out)
	}
	for i, l := range lines {
		if !strings.Contains(l, fmt.Sprintf(" %d  ", i+1)) {
			t.Fatalf("line %d lacks seq %d: %q", i, i+1, l)
		}
	}
	code, out, _ = cli(t, env, "status", id)
	var st struct {
		Status string
		Result struct {
			In map[string]any `json:"-"`
		}
		Raw map[string]json.RawMessage `json:"-"`
	}
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil || st.Status != "succeeded" {
		t.Fatalf("status: %d %s", code, out)
	}
	var full map[string]any
	_ = json.Unmarshal([]byte(out), &full)
	res := full["result"].(map[string]any)
	if _, ok := res["enrich"]; !ok {
		t.Fatalf("join result lacks enrich: %v", res)
	}
	if _, ok := res["page"]; !ok {
		t.Fatalf("join result lacks page: %v", res)
	}
}

func TestDevEndToEnd(t *testing.T) {
	t.Parallel()
	otlp := newOTLPReceiver(t)
	p := start(t, []string{"OTEL_EXPORTER_OTLP_ENDPOINT=" + otlp.url, "OTEL_BSP_SCHEDULE_DELAY=50"},
		"dev", "--addr", "127.0.0.1:0", "--log-format", "json")
	api := waitLine(t, p.stdout.lines, `API and dashboard:\s+(http://\S+)`, 20*time.Second)
	checkTail(t, api)
	otlp.waitForTaskTrace(t, "textstats", 10*time.Second)
	// A failed task makes tail exit 1.
	env := []string{"DSAT_API=" + api}
	_, id, _ := cli(t, env, "submit", "textstats", `{}`)
	id = strings.TrimSpace(id)
	if code, _, _ := cli(t, env, "cancel", id); code != 0 && code != 1 {
		t.Fatalf("cancel exit %d", code)
	}
	// --delay and --deadline reach the task's state.
	code, id, errs := cli(t, env, "submit", "--delay", "1h", "--deadline", "2h", "textstats", `{}`)
	if code != 0 {
		t.Fatalf("submit --deadline: %d %s", code, errs)
	}
	if _, out, _ := cli(t, env, "status", strings.TrimSpace(id)); !strings.Contains(out, `"deadline"`) || !strings.Contains(out, `"scheduled"`) {
		t.Fatalf("status of a delayed task with a deadline: %s", out)
	}
	// --priority reaches the task's state (issue 16).
	if code, id, errs = cli(t, env, "submit", "--priority", "low", "textstats", `{}`); code != 0 {
		t.Fatalf("submit --priority: %d %s", code, errs)
	}
	if _, out, _ := cli(t, env, "status", strings.TrimSpace(id)); !strings.Contains(out, `"priority": "low"`) && !strings.Contains(out, `"priority":"low"`) {
		t.Fatalf("status of a low task: %s", out)
	}
}

func TestServeAndTwoWorkersOnRealRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	redisURL := "redis://" + srv.Addr
	serve := start(t, nil, "serve", "--redis", redisURL, "--pipelines", "../../examples", "--addr", "127.0.0.1:0", "--log-format", "json")
	api := waitLine(t, serve.stderr.lines, `"url":"(http://[^"]+)".*dsat serve listening`, 20*time.Second)
	w1 := start(t, nil, "worker", "--redis", redisURL, "--pipelines", "../../examples", "--id", "w1", "--log-format", "json")
	w2 := start(t, nil, "worker", "--redis", redisURL, "--pipelines", "../../examples", "--id", "w2", "--log-format", "json")
	stopTogether(t, serve, w1, w2)
	t0 := time.Now()
	checkTail(t, api)
	t.Logf("checkTail took %s", time.Since(t0))
	env := []string{"DSAT_API=" + api}
	// 20 submits, then 20 tails, each a CLI process, a few at a time.
	var ids []string
	for i, r := range cliEach(t, env, 20, func(int) []string { return []string{"submit", "wordcount", `{"text":"one two three"}`} }) {
		if r.code != 0 {
			t.Fatalf("submit %d: %d %s %s", i, r.code, r.out, r.errs)
		}
		ids = append(ids, strings.TrimSpace(r.out))
	}
	t.Logf("submits done at %s", time.Since(t0))
	for i, r := range cliEach(t, env, len(ids), func(i int) []string { return []string{"tail", ids[i]} }) {
		if r.code != 0 {
			t.Fatalf("tail %s: %d %s %s", ids[i], r.code, r.out, r.errs)
		}
	}
	t.Logf("tails done at %s", time.Since(t0))
	_, out, _ := cli(t, env, "status", ids[0])
	if !strings.Contains(out, `"words": 3`) {
		t.Fatalf("wordcount result: %s", out)
	}
}
