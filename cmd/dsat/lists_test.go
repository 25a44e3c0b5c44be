package main

import (
	"context"
	"encoding/json"
	"regexp"
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
)

// TestDeadAndPipelines: "dsat pipelines" lists the loaded pipelines and
// "dsat dead" their dead letters, of one pipeline or of all (issue 14).
func TestDeadAndPipelines(t *testing.T) {
	ctx := context.Background()
	c, rdb, api := apiOnMiniredis(t,
		"name: demo\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [b]}\n  b: {handler: echo}\n",
		"name: other\nversion: 2.1.0\npartitions: 2\nsteps:\n  x: {handler: echo}\n")
	env := map[string]string{"DSAT_API": api}

	code, out, errs := runCLI(t, env, "", "pipelines")
	if code != 0 || !strings.Contains(out, "NAME") ||
		!regexpMatch(`(?m)^demo +1\.0\.0 +1 +a +a,b +-$`, out) || !regexpMatch(`(?m)^other +2\.1\.0 +2 +x +x +-$`, out) {
		t.Fatalf("pipelines: exit %d\n%s%s", code, out, errs)
	}
	// dsat pause and resume, and the PAUSED column.
	if code, out, errs := runCLI(t, env, "", "pause", "--step", "b", "demo"); code != 0 || out != "demo/b: paused\n" {
		t.Fatalf("pause: exit %d %q %s", code, out, errs)
	}
	if code, out, _ := runCLI(t, env, "", "pause", "other"); code != 0 || out != "other: paused\n" {
		t.Fatalf("pause other: exit %d %q", code, out)
	}
	if _, out, _ := runCLI(t, env, "", "pipelines"); !regexpMatch(`(?m)^demo .* b$`, out) || !regexpMatch(`(?m)^other .* all$`, out) {
		t.Fatalf("pipelines with pauses:\n%s", out)
	}
	if code, out, _ := runCLI(t, env, "", "resume", "other"); code != 0 || out != "other: running\n" {
		t.Fatalf("resume: exit %d %q", code, out)
	}
	if code, _, errs := runCLI(t, env, "", "pause", "--step", "zz", "demo"); code != 1 || !strings.Contains(errs, "no step") {
		t.Fatalf("pause an unknown step: exit %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, env, "", "pause", "--step", "", "demo"); code != 2 || !strings.Contains(errs, "--step is empty") {
		t.Fatalf("pause with an empty --step: exit %d %s", code, errs)
	}
	if code, _, errs := runCLI(t, env, "", "pause"); code != 2 || !strings.Contains(errs, "want one pipeline name") {
		t.Fatalf("pause without a name: exit %d %s", code, errs)
	}
	code, out, _ = runCLI(t, env, "", "pipelines", "--json")
	var list []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 {
		t.Fatalf("pipelines --json: exit %d\n%s", code, out)
	}

	if code, out, errs := runCLI(t, env, "", "dead"); code != 0 || out != "" || !strings.Contains(errs, "no dead letters") {
		t.Fatalf("dead with none: exit %d %q %q", code, out, errs)
	}
	var tasks []string
	for i := 0; i < 2; i++ {
		s, err := c.Submit(ctx, "demo", []byte(`{}`), dsat.SubmitOptions{})
		if err != nil {
			t.Fatal(err)
		}
		tasks = append(tasks, s.ID)
		tid, _ := dsat.ParseTaskID(s.ID)
		msgs, _ := rdb.XRange(ctx, c.Keys().Step(tid.Partition, "a"), "-", "+").Result()
		e, err := dsat.ParseEnvelope(msgs[len(msgs)-1].Values, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Fail(ctx, dsat.Delivery{Envelope: e, EntryID: msgs[len(msgs)-1].ID, Worker: "w"}, dsat.Failure{Message: "broken\nbadly", Final: true}); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errs = runCLI(t, env, "", "dead")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID") ||
		!strings.Contains(lines[1], tasks[1]) || !strings.Contains(lines[2], tasks[0]) || !strings.Contains(lines[1], "broken badly") {
		t.Fatalf("dead: exit %d\n%s%s", code, out, errs)
	}
	code, out, errs = runCLI(t, env, "", "dead", "--pipeline", "demo", "--limit", "1")
	if code != 0 || !strings.Contains(out, tasks[1]) || strings.Contains(out, tasks[0]) || !strings.Contains(errs, "more: dsat dead --pipeline demo --limit 1 --before ") {
		t.Fatalf("dead --limit 1: exit %d\n%s%s", code, out, errs)
	}
	cursor := strings.Fields(errs)[len(strings.Fields(errs))-1]
	code, out, _ = runCLI(t, env, "", "dead", "--pipeline", "demo", "--before", cursor, "--json")
	var items []dsat.DeadLetter
	if code != 0 || json.Unmarshal([]byte(out), &items) != nil || len(items) != 1 || items[0].Task != tasks[0] || items[0].Step != "a" {
		t.Fatalf("dead --before --json: exit %d\n%s", code, out)
	}
	for _, tc := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"dead", "--pipeline", "ghost"}, 1, "pipeline not found"},
		{[]string{"dead", "--limit", "0"}, 2, "--limit must be from 1 to 1000"},
		{[]string{"dead", "--before", "1-0"}, 2, "--before takes the cursor"},
		{[]string{"dead", "flaky"}, 2, "--pipeline"},
		{[]string{"pipelines", "x"}, 2, "takes no arguments"},
	} {
		if code, _, errs := runCLI(t, env, "", tc.args...); code != tc.code || !strings.Contains(errs, tc.want) || strings.Contains(errs, "dsat: ") {
			t.Errorf("%v: exit %d %q", tc.args, code, errs)
		}
	}
}

func regexpMatch(re, s string) bool { return regexp.MustCompile(re).MatchString(s) }
