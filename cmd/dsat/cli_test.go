package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/internal/redistest"
)

func TestValidate(t *testing.T) {
	code, out, errs := runCLI(t, nil, "", "validate", "../../examples/textstats.yaml", "../../examples/wordcount.yaml", "../../examples/flaky.yaml", "../../examples/pages.yaml")
	if code != 0 || strings.Count(out, ": ok") != 4 {
		t.Fatalf("examples: %d %s %s", code, out, errs)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("name: Bad\nversion: 1.2.10\nsteps:\n  a: {handler: echo, next: [ghost], retries: many}\n"), 0o644)
	code, _, errs = runCLI(t, nil, "", "validate", bad, "../../examples/flaky.yaml")
	if code != 1 {
		t.Fatalf("broken file: exit %d", code)
	}
	for _, want := range []string{
		bad + `:1: field "name": "Bad" must be`,
		bad + `:2: field "version": invalid version "1.2.10": Z must be one character`,
		bad + `:4: step "a": field "retries": must be a whole number from 0 to 100, got "many"`,
		bad + `:4: step "a": field "next": unknown target step "ghost"`,
		"1 of 2 files have problems",
	} {
		if !strings.Contains(errs, want) {
			t.Errorf("missing %q in:\n%s", want, errs)
		}
	}
	one := filepath.Join(t.TempDir(), "one.yaml")
	os.WriteFile(one, []byte("name: one\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n"), 0o644)
	if code, out, errs := runCLI(t, nil, "", "validate", one); code != 0 || !strings.Contains(out, "ok (pipeline one 1.0.0, 1 step)") {
		t.Fatalf("one step: exit %d %q %s", code, out, errs)
	}
	if code, _, _ := runCLI(t, nil, "", "validate"); code != 2 {
		t.Fatalf("no files: exit %d", code)
	}
	// Schedule ids are global: two files declaring one are an error.
	dir := t.TempDir()
	for _, name := range []string{"one", "two"} {
		os.WriteFile(filepath.Join(dir, name+".yaml"), []byte("name: "+name+"\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n"+
			"schedules:\n  dup: {every: 1m}\n"), 0o644)
	}
	code, _, errs = runCLI(t, nil, "", "validate", filepath.Join(dir, "one.yaml"), filepath.Join(dir, "two.yaml"))
	if code != 1 || !strings.Contains(errs, `schedule "dup" is also declared in`) {
		t.Fatalf("duplicate schedule ids: exit %d %s", code, errs)
	}
}

// TestValidateHandlers: validate and serve refuse what no worker of this
// binary can run (an unknown handler, exec settings it refuses), with
// file:line, unless the handler is named in --handlers.
func TestValidateHandlers(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "p.yaml")
	os.WriteFile(f, []byte("name: p\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [b, c]}\n  b: {handler: ocr}\n  c: {handler: exec, with: {command: \"echo hi\"}}\n"), 0o644)
	code, _, errs := runCLI(t, nil, "", "validate", f)
	if code != 1 || !strings.Contains(errs, f+`:5: pipeline p: step "b": field "handler": no handler named "ocr"`) ||
		!strings.Contains(errs, f+`:6: pipeline p: step "c": field "with": `) {
		t.Fatalf("validate: exit %d\n%s", code, errs)
	}
	os.WriteFile(f, []byte("name: p\nversion: 1.0.0\nsteps:\n  a: {handler: echo, next: [b]}\n  b: {handler: ocr}\n"), 0o644)
	if code, out, errs := runCLI(t, nil, "", "validate", "--handlers", "ocr, pdf", f); code != 0 || !strings.Contains(out, ": ok") {
		t.Fatalf("validate --handlers: exit %d %s %s", code, out, errs)
	}
	if code, _, errs := runCLI(t, map[string]string{"DSAT_HANDLERS": "ocr"}, "", "validate", f); code != 0 {
		t.Fatalf("DSAT_HANDLERS: exit %d %s", code, errs)
	}
	srv := redistest.Start(t)
	code, _, errs = runCLI(t, nil, "", "serve", "--redis", "redis://"+srv.Addr, "--pipelines", dir, "--addr", "127.0.0.1:0")
	if code == 0 || !strings.Contains(errs, `no handler named "ocr"`) || !strings.Contains(errs, "--handlers") {
		t.Fatalf("serve with an unknown handler: exit %d\n%s", code, errs)
	}
}

func TestGraph(t *testing.T) {
	code, out, _ := runCLI(t, nil, "", "graph", "../../examples/textstats.yaml")
	if code != 0 || !strings.HasPrefix(out, `digraph "textstats" {`) || !strings.HasSuffix(out, "}\n") {
		t.Fatalf("graph: %d\n%s", code, out)
	}
	nodes := regexp.MustCompile(`(?m)^  "([a-z]+)" \[`).FindAllStringSubmatch(out, -1)
	edges := regexp.MustCompile(`(?m)^  "([a-z]+)" -> "([a-z]+)"(?: \[label="([a-z-]+)"\])?;$`).FindAllStringSubmatch(out, -1)
	if len(nodes) != 6 || len(edges) != 7 {
		t.Fatalf("%d nodes, %d edges:\n%s", len(nodes), len(edges), out)
	}
	labels := map[string]string{}
	for _, e := range edges {
		labels[e[1]+">"+e[2]] = e[3]
	}
	if labels["classify>page"] != "urgent" || labels["classify>queue"] != "default" || labels["intake>enrich"] != "fan-out" {
		t.Fatalf("edge labels %v", labels)
	}
	if !strings.Contains(out, `"report" [label="report\n(echo)", peripheries=2, xlabel="join"]`) {
		t.Fatalf("join not drawn:\n%s", out)
	}
}

// graphOf is dsat graph's output for a pipeline file holding yaml.
func graphOf(t *testing.T, yaml string) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "p.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errs := runCLI(t, nil, "", "graph", f)
	if code != 0 {
		t.Fatalf("graph: %d %s", code, errs)
	}
	return out
}

// TestGraphSubPipelineAndFailureHandler: a sub-pipeline step is drawn as a
// link to its pipeline's graph, the failure handler as a dashed box.
func TestGraphSubPipelineAndFailureHandler(t *testing.T) {
	out := graphOf(t, "name: p\nversion: '1.0'\nsteps:\n  a: {handler: echo, next: [m]}\n  m: {pipeline: mailer}\n  alert: {handler: echo}\non_failure: alert\n")
	for _, want := range []string{
		`"m" [label="m\n(pipeline mailer)", shape=component, style=solid, URL="mailer.svg", tooltip="sub-pipeline: a child task of mailer"]`,
		`"alert" [label="alert\n(echo)", style=dashed, xlabel="on_failure"]`, `"a" -> "m";`} {
		if !strings.Contains(out, want) {
			t.Fatalf("graph lacks %s:\n%s", want, out)
		}
	}
}

func TestCLIErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"unknown subcommand", []string{"fly"}, 2, `unknown command "fly"`},
		{"no redis", []string{"serve", "--pipelines", "../../examples"}, 2, "--redis is required"},
		{"bad url", []string{"serve", "--redis", "http://x:1", "--pipelines", "../../examples"}, 1, "bad Redis URL"},
		{"unreachable", []string{"worker", "--redis", "redis://127.0.0.1:1", "--pipelines", "../../examples"}, 1, "cannot reach Redis at redis://127.0.0.1:1"},
		{"missing folder", []string{"serve", "--redis", "redis://127.0.0.1:1", "--pipelines", filepath.Join(dir, "nope")}, 1, "pipelines folder"},
		{"empty folder", []string{"serve", "--redis", "redis://127.0.0.1:1", "--pipelines", dir}, 1, "holds no *.yaml or *.yml file"},
		{"bad flag", []string{"serve", "--nope"}, 2, "flag provided but not defined: -nope"},
		{"bad log level", []string{"dev", "--log-level", "loud"}, 2, "--log-level"},
		{"submit no args", []string{"submit"}, 2, "want a pipeline name"},
		{"submit bad json", []string{"submit", "p", "{"}, 2, "not valid JSON"},
		{"submit bad deadline", []string{"submit", "--deadline", "soon", "p"}, 2, "--deadline \"soon\": want a positive duration"},
		{"submit bad priority", []string{"submit", "--priority", "urgent", "p"}, 2, "--priority \"urgent\": want high, normal or low"},
		{"api down", []string{"status", "--api", "http://127.0.0.1:1", "06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0"}, 1, "cannot reach the dsat API"},
		{"bad api", []string{"status", "--api", "ftp://x", "06h1ki9ia4001ttg3m6qbao188.textstats.1.0.0"}, 2, "must be an http://"},
	} {
		code, _, errs := runCLI(t, nil, "", tc.args...)
		if code != tc.code || !strings.Contains(errs, tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want exit %d and %q", tc.name, code, errs, tc.code, tc.want)
		}
		if tc.code == 1 && strings.Count(strings.TrimSpace(errs), "\n") > 0 {
			t.Errorf("%s: error is not one line: %q", tc.name, errs)
		}
	}
	code, out, _ := runCLI(t, nil, "", "help", "worker")
	if code != 0 || !strings.Contains(out, "-steps") || !strings.Contains(out, "DSAT_REDIS_URL") || !strings.Contains(out, "Examples:") {
		t.Fatalf("help worker: %d %s", code, out)
	}
	if code, out, _ := runCLI(t, nil, "", "version"); code != 0 || out != "dsat 0.1.0 (envelope format 1.1)\n" {
		t.Fatalf("version %q", out)
	}
}

func TestRefusesEvictingRedis(t *testing.T) {
	srv := redistest.Start(t, "maxmemory-policy allkeys-lru")
	code, _, errs := runCLI(t, nil, "", "serve", "--redis", "redis://"+srv.Addr, "--pipelines", "../../examples")
	if code != 1 || !strings.Contains(errs, "maxmemory-policy is allkeys-lru") || !strings.Contains(errs, "noeviction") {
		t.Fatalf("exit %d: %s", code, errs)
	}
}

func TestEnvironmentVariables(t *testing.T) {
	t.Parallel()
	code, _, errs := runCLI(t, map[string]string{"DSAT_REDIS_URL": "redis://127.0.0.1:1", "DSAT_PIPELINES": "../../examples"}, "", "serve")
	if code != 1 || !strings.Contains(errs, "cannot reach Redis at redis://127.0.0.1:1") {
		t.Fatalf("env vars not used: %d %s", code, errs)
	}
}

// TestBenchOnRealRedis: against redis-server the drain reports Redis's CPU
// per task-step, and --cpuprofile writes a profile.
func TestBenchOnRealRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	prof := filepath.Join(t.TempDir(), "drain.prof")
	code, out, errs := runCLI(t, nil, "", "bench", "--json", "--redis", "redis://"+srv.Addr, "--mode", "drain",
		"--tasks", "300", "--steps", "2", "--cpuprofile", prof)
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Errors != 0 || res.Tasks != 300 || res.Embedded {
		t.Fatalf("bench: exit %d\n%s\n%s", code, out, errs)
	}
	if res.RedisCPU <= 0 || res.RedisUSPerStep <= 0 || res.RedisUSPerStep*600/1e6 > res.RedisCPU*1.01 {
		t.Fatalf("redis cpu %.3f s, %.1f µs per task-step", res.RedisCPU, res.RedisUSPerStep)
	}
	if fi, err := os.Stat(prof); err != nil || fi.Size() == 0 {
		t.Fatalf("cpu profile: %v", err)
	}
}

func TestBenchVerifiesEveryTask(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{
		{"--mode", "drain", "--tasks", "300", "--steps", "3", "--fanout", "2"},
		{"--mode", "steady", "--rate", "100", "--duration", "500ms", "--steps", "2"},
	} {
		t.Run(args[1], func(t *testing.T) {
			t.Parallel()
			code, out, errs := runCLI(t, nil, "", append([]string{"bench", "--json"}, args...)...)
			var res benchResult
			if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Errors != 0 || res.Tasks == 0 || !res.Embedded {
				t.Fatalf("bench %v: exit %d\n%s\n%s", args, code, out, errs)
			}
			if want := 3; args[1] == "drain" && res.Steps != want+2 {
				t.Fatalf("fan-out of 2 over 3 steps runs %d steps per task, want 5", res.Steps)
			}
		})
	}
}

// TestEmptyTokenListRefused: a --token (or DSAT_API_TOKEN) that holds no
// token (" , ") is a usage error at start, not auth silently off.
func TestEmptyTokenListRefused(t *testing.T) {
	for _, tc := range []struct {
		env  map[string]string
		args []string
	}{
		{nil, []string{"serve", "--token", " , ", "--redis", "redis://127.0.0.1:1", "--pipelines", "../../examples"}},
		{nil, []string{"dev", "--token", ","}},
		{map[string]string{"DSAT_API_TOKEN": " "}, []string{"serve", "--redis", "redis://127.0.0.1:1", "--pipelines", "../../examples"}},
	} {
		code, _, errs := runCLI(t, tc.env, "", tc.args...)
		if code != 2 || !strings.Contains(errs, "holds no token") || !strings.Contains(errs, "leave it unset to run without auth") {
			t.Errorf("%v %v: exit %d, %s", tc.env, tc.args, code, errs)
		}
	}
	if ts, err := parseTokens(" old , new,"); err != nil || strings.Join(ts, "|") != "old|new" {
		t.Fatalf("parseTokens: %v %v", ts, err)
	}
}

// TestLoopbackListener: the API's Host check is on only for a listener
// bound to a loopback address.
func TestLoopbackListener(t *testing.T) {
	for addr, want := range map[string]bool{"127.0.0.1:0": true, "0.0.0.0:0": false} {
		l, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(l); got != want {
			t.Errorf("%s: loopback %v", addr, got)
		}
		l.Close()
	}
}

// TestValidateSubPipelineCycle: dsat validate refuses a cycle of
// sub-pipelines across the files it is given, with file:line.
func TestValidateSubPipelineCycle(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")
	if err := os.WriteFile(a, []byte("name: a\nversion: '1.0'\nsteps:\n  s: {pipeline: b}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(b, []byte("name: b\nversion: '1.0'\nsteps:\n  s: {handler: echo, next: [t]}\n  t: {pipeline: a}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _, errs := runCLI(t, nil, "", "validate", a); code != 0 {
		t.Fatalf("one file (its sub-pipeline not given): exit %d %s", code, errs)
	}
	code, _, errs := runCLI(t, nil, "", "validate", a, b)
	if code != 1 || !strings.Contains(errs, `b.yaml:5: step "t": field "pipeline": sub-pipeline cycle: a -> b -> a`) {
		t.Fatalf("cycle: exit %d\n%s", code, errs)
	}
}
