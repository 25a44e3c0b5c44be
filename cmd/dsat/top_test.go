package main

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// TestTopSnapshot: without a terminal, dsat top prints one snapshot of
// every step (backlog, rate, failures, latency, state) and exits.
func TestTopSnapshot(t *testing.T) {
	ctx := context.Background()
	c, _, api := apiOnMiniredis(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [b]}\n  b: {handler: echo, breaker: {failures: 1, within: 1m, open_for: 1m}}\n")
	for range 3 {
		if _, err := c.Submit(ctx, "demo", []byte(`{}`), dsat.SubmitOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// 600 tokens of a ended over the last minute (a 10 ms handler), 4
	// failed attempts and one dead token of b, whose breaker is open.
	var run dsat.LatencyHistogram
	for range 600 {
		run.Add(10 * time.Millisecond)
	}
	now := time.Now()
	if err := c.RecordStats(ctx, now.Add(-50*time.Second), []dsat.StepSample{{Pipeline: "demo", Step: "a", Ended: 600, Run: run}, {Pipeline: "demo", Step: "b", Failed: 4, Dead: 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.BreakerFailed(ctx, "demo", "b", "t"); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, map[string]string{"DSAT_API": api}, "", "top")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if strings.Contains(out, "\x1b[") {
		t.Fatalf("a snapshot holds terminal escapes: %q", out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 6 || !strings.Contains(lines[3], "PIPELINE") || !strings.Contains(lines[3], "RATE/S") {
		t.Fatalf("want a title, a note, a blank line, a header and two steps:\n%s", out)
	}
	a := strings.Fields(lines[4])
	// PIPELINE STEP BACKLOG RUNNING RATE/S FAILED DEAD P50 P95
	if len(a) != 9 || a[0] != "demo" || a[1] != "a" || a[2] != "3" || a[3] != "0/0" || a[5] != "0" || a[6] != "0" {
		t.Fatalf("step a: %q", lines[4])
	}
	if ms, err := strconv.ParseFloat(strings.TrimSuffix(a[7], "ms"), 64); err != nil || ms < 8 || ms > 11 {
		t.Fatalf("step a's p50 %q: want about 10 ms (a histogram bin)", a[7])
	}
	// 600 ended in the last 50 to 60 s (what the window's buckets cover).
	if r, err := strconv.ParseFloat(a[4], 64); err != nil || r < 9.5 || r > 12.1 {
		t.Fatalf("step a's rate %q: want about 10/s", a[4])
	}
	b := strings.Fields(lines[5])
	if len(b) != 11 || b[1] != "b" || b[5] != "4" || b[6] != "1" || b[7] != "-" || strings.Join(b[9:], " ") != "breaker open" {
		t.Fatalf("step b: %q", lines[5])
	}
	// One pipeline, a wider window.
	if code, out, errs := runCLI(t, map[string]string{"DSAT_API": api}, "", "top", "--pipeline", "demo", "--window", "15m"); code != 0 || !strings.Contains(out, "over the last 15m") {
		t.Fatalf("--pipeline --window: exit %d\n%s%s", code, out, errs)
	}
	for _, bad := range [][]string{{"top", "--window", "1h"}, {"top", "extra"}, {"top", "--interval", "1ms"}} {
		if code, _, _ := runCLI(t, map[string]string{"DSAT_API": api}, "", bad...); code != 2 {
			t.Errorf("%v: exit %d, want 2", bad, code)
		}
	}
	if code, _, errs := runCLI(t, map[string]string{"DSAT_API": api}, "", "top", "--pipeline", "nope"); code == 0 || !strings.Contains(errs, "nope") {
		t.Errorf("an unknown pipeline: exit %d %s", code, errs)
	}
}

// TestTopVersionsAndWindow: with two loaded versions of a pipeline, top
// shows each version's steps once, labelled with the version (the older
// one's where its old tasks drain), and names the window the server used
// (--window 11s is rounded up to 20s); its help lists its flags.
func TestTopVersionsAndWindow(t *testing.T) {
	_, _, api := apiOnMiniredis(t,
		"name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [old]}\n  old: {handler: echo}\n",
		"name: demo\nversion: 2.0.0\nsteps:\n  a: {handler: echo, next: [b]}\n  b: {handler: echo}\n")
	code, out, errs := runCLI(t, map[string]string{"DSAT_API": api}, "", "top", "--window", "11s")
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errs)
	}
	if !strings.Contains(out, "over the last 20s\n") {
		t.Fatalf("want the server's window, 20s:\n%s", out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(out), "\n")[4:] {
		f := strings.Fields(l)
		got = append(got, f[0]+" "+f[1])
	}
	if want := "demo@2.0.0 a|demo@2.0.0 b|demo@1.0.0 a|demo@1.0.0 old"; strings.Join(got, "|") != want {
		t.Fatalf("rows %q, want %s:\n%s", got, want, out)
	}
	if code, out, _ := runCLI(t, nil, "", "help", "top"); code != 0 || !strings.Contains(out, "-window") || !strings.Contains(out, "-once") || strings.Contains(out, "last three") {
		t.Fatalf("help top: exit %d\n%s", code, out)
	}
	if code, out, _ := runCLI(t, nil, "", "help", "tail"); code != 0 || !strings.Contains(out, "event id") {
		t.Fatalf("help tail: exit %d\n%s", code, out)
	}
	if code, _, errs := runCLI(t, map[string]string{"DSAT_API": api}, "", "tail", "--pipeline", "demo", "--after", "3"); code != 2 || !strings.Contains(errs, "event id") {
		t.Fatalf("tail --pipeline --after SEQ: exit %d %s", code, errs)
	}
}
