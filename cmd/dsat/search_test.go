package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
)

// TestTasksAndBulkCLI: dsat tasks lists by status (table, JSON lines,
// pages), dsat retry --failed and --dead re-drive a pipeline's failed
// tasks, dsat cancel --pipeline cancels the rest (issue 18).
func TestTasksAndBulkCLI(t *testing.T) {
	ctx := context.Background()
	rdb, c, env := demoAPI(t)
	ids, err := c.SubmitBatch(ctx, "demo", [][]byte{[]byte(`1`), []byte(`2`), []byte(`3`)})
	if err != nil {
		t.Fatal(err)
	}
	// The first two fail for good.
	tid, _ := dsat.ParseTaskID(ids[0])
	msgs, _ := rdb.XRange(ctx, c.Keys().Step(tid.Partition, "a"), "-", "+").Result()
	for _, m := range msgs[:2] {
		e, err := dsat.ParseEnvelope(m.Values, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Fail(ctx, dsat.Delivery{Envelope: e, EntryID: m.ID, Worker: "w"}, dsat.Failure{Message: "broken", Final: true}); err != nil {
			t.Fatal(err)
		}
	}

	code, out, errs := runCLI(t, env, "", "tasks", "--pipeline", "demo", "--status", "failed", "--limit", "1")
	if code != 0 || !regexpMatch(`(?m)^ID +STATUS +CREATED\n`+ids[1]+` +failed +20`, out) || strings.Contains(out, ids[0]) ||
		!strings.Contains(errs, "more: dsat tasks --pipeline demo --status failed --limit 1 --cursor "+ids[1]) {
		t.Fatalf("tasks --status failed --limit 1: exit %d\n%s%s", code, out, errs)
	}
	code, out, _ = runCLI(t, env, "", "tasks", "--since", "1h", "--all", "--limit", "1", "--json")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var first dsat.TaskSummary
	if code != 0 || len(lines) != 3 || json.Unmarshal([]byte(lines[0]), &first) != nil || first.ID != ids[2] || first.Status != dsat.StatusPending {
		t.Fatalf("tasks --all --json: exit %d\n%s", code, out)
	}
	if code, _, errs := runCLI(t, env, "", "tasks", "--since", "yesterday"); code != 2 || !strings.Contains(errs, "--since") {
		t.Fatalf("tasks --since yesterday: exit %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, env, "", "tasks", "--status", "done"); code != 1 || !strings.Contains(errs, "status") {
		t.Fatalf("tasks --status done: exit %d %s", code, errs)
	}

	if code, out, errs := runCLI(t, env, "", "retry", "--failed", "--pipeline", "demo"); code != 0 || out != "demo: 2 tasks retried\n" {
		t.Fatalf("retry --failed: exit %d %q %s", code, out, errs)
	}
	if code, out, _ := runCLI(t, env, "", "retry", "--failed", "--pipeline", "demo"); code != 0 || out != "demo: 0 tasks retried\n" {
		t.Fatalf("second retry --failed: exit %d %q", code, out)
	}
	if code, out, _ := runCLI(t, env, "", "retry", "--dead", "--pipeline", "demo"); code != 0 || out != "demo: 0 tasks retried (dead letters)\n" {
		t.Fatalf("retry --dead: exit %d %q", code, out)
	}
	if code, _, errs := runCLI(t, env, "", "retry", "--failed"); code != 2 || !strings.Contains(errs, "need --pipeline") {
		t.Fatalf("retry --failed without a pipeline: exit %d %s", code, errs)
	}
	if code, out, errs := runCLI(t, env, "", "cancel", "--pipeline", "demo", "--status", "pending"); code != 0 || out != "demo: 1 tasks cancelled\n" {
		t.Fatalf("cancel --pipeline: exit %d %q %s", code, out, errs)
	}
	if code, out, _ := runCLI(t, env, "", "cancel", "--pipeline", "demo"); code != 0 || out != "demo: 2 tasks cancelled\n" {
		t.Fatalf("cancel the rest: exit %d %q", code, out)
	}
	// An unknown pipeline is an error alone, not "0 tasks cancelled" and
	// then the error (review 8).
	if code, out, errs := runCLI(t, env, "", "cancel", "--pipeline", "gone"); code != 1 || out != "" || !strings.Contains(errs, "pipeline not found") {
		t.Fatalf("cancel --pipeline of an unknown pipeline: exit %d %q %s", code, out, errs)
	}
	for _, id := range ids {
		if st, _ := c.Get(ctx, id); st.Status != dsat.StatusCancelled {
			t.Errorf("%s: %s", id, st.Status)
		}
	}
}

// demoAPI serves the API of a one-step pipeline "demo" on miniredis; the
// environment it returns points the CLI at it.
func demoAPI(t *testing.T) (*redis.Client, *dsat.Client, map[string]string) {
	t.Helper()
	c, rdb, url := apiOnMiniredis(t, "name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n")
	return rdb, c, map[string]string{"DSAT_API": url}
}
