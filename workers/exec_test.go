package workers

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

func execTask(with map[string]any, payload string) *dsat.Task {
	return &dsat.Task{ID: "t", Step: "s", Attempt: 1, With: with, Payload: []byte(payload)}
}

func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "step.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestExecSuccess(t *testing.T) {
	h := &ExecHandler{MaxOutput: 1 << 20}
	sh := script(t, `read -r line; printf '{"got":%s,"step":"%s","env":"%s"}' "$line" "$DSAT_STEP" "$GREETING"`)
	res, err := h.Handle(context.Background(), execTask(map[string]any{"command": []any{sh}, "env": map[string]any{"GREETING": "hi"}}, `{"n":1}`))
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Output) != `{"got":{"n":1},"step":"s","env":"hi"}` {
		t.Fatalf("output %s", res.Output)
	}
	// Plain text output becomes a JSON string.
	res, err = h.Handle(context.Background(), execTask(map[string]any{"command": []any{"echo", "hello world"}}, `{}`))
	if err != nil || string(res.Output) != `"hello world"` {
		t.Fatalf("text output %s, %v", res.Output, err)
	}
	dir := t.TempDir()
	res, err = h.Handle(context.Background(), execTask(map[string]any{"command": []any{"pwd"}, "dir": dir}, `{}`))
	if err != nil || !strings.Contains(string(res.Output), filepath.Base(dir)) {
		t.Fatalf("dir: %s, %v", res.Output, err)
	}
}

func TestExecNonZeroExitCarriesStderrTail(t *testing.T) {
	h := &ExecHandler{MaxOutput: 1 << 20}
	sh := script(t, `i=0; while [ $i -lt 500 ]; do echo "noise line $i" >&2; i=$((i+1)); done; echo "the real problem" >&2; exit 3`)
	_, err := h.Handle(context.Background(), execTask(map[string]any{"command": []any{sh}}, `{}`))
	if err == nil || !strings.Contains(err.Error(), "exited with code 3") || !strings.HasSuffix(err.Error(), "the real problem") {
		t.Fatalf("error %v", err)
	}
	if len(err.Error()) > stderrTail+200 {
		t.Fatalf("error carries %d bytes, want only the tail", len(err.Error()))
	}
}

// TestExecMissingProgramIsFinal: a program that is not there (by name on
// PATH, or by path) cannot succeed on a retry: the error skips retries,
// while a program that exits non-zero is retried as usual.
func TestExecMissingProgramIsFinal(t *testing.T) {
	h := &ExecHandler{MaxOutput: 1 << 20}
	for _, argv := range [][]any{{"dsat-no-such-program"}, {"/nonexistent/dir/prog"}} {
		_, err := h.Handle(context.Background(), execTask(map[string]any{"command": argv}, `{}`))
		if !errors.Is(err, SkipRetry) || !strings.Contains(err.Error(), "install it") {
			t.Errorf("%v: error %v, want a final failure", argv, err)
		}
	}
	sh := script(t, `exit 1`)
	if _, err := h.Handle(context.Background(), execTask(map[string]any{"command": []any{sh}}, `{}`)); err == nil || errors.Is(err, SkipRetry) {
		t.Fatalf("a failing program: %v, want a retried failure", err)
	}
}

func TestExecTimeoutKillsTheProcessGroup(t *testing.T) {
	h := &ExecHandler{MaxOutput: 1 << 20}
	pidfile := filepath.Join(t.TempDir(), "child.pid")
	sh := script(t, `sleep 30 & echo $! > `+pidfile+`; wait`)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := h.Handle(ctx, execTask(map[string]any{"command": []any{sh}}, `{}`))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("handler returned after %s", d)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	deadline := time.Now().Add(2 * time.Second)
	for {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil || strings.Contains(string(stat), ") Z ") {
			return // gone (or a zombie waiting for its reaper): killed
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d still running after the timeout: %s", pid, stat)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestExecHugeOutputIsAnError(t *testing.T) {
	h := &ExecHandler{MaxOutput: 1000}
	_, err := h.Handle(context.Background(), execTask(map[string]any{"command": []any{"sh", "-c", "head -c 100000 /dev/zero | tr '\\0' x"}}, `{}`))
	if err == nil || !strings.Contains(err.Error(), "output larger than 1000 bytes") {
		t.Fatalf("error %v", err)
	}
}

func TestExecBadSettings(t *testing.T) {
	h := &ExecHandler{MaxOutput: 1000}
	for _, with := range []map[string]any{{}, {"command": "ls"}, {"command": []any{1}}, {"command": []any{"ls"}, "env": "x"}, {"command": []any{"ls"}, "cwd": "/"}} {
		if h.ValidateSettings(with) == nil {
			t.Errorf("settings %v accepted", with)
		}
		if _, err := h.Handle(context.Background(), execTask(with, `{}`)); !errors.Is(err, SkipRetry) {
			t.Errorf("settings %v: %v, want SkipRetry", with, err)
		}
	}
}

func TestBuiltins(t *testing.T) {
	m := NewMux()
	RegisterBuiltins(m, 0)
	ctx := context.Background()
	run := func(name string, with map[string]any, attempt int) (dsat.Result, error) {
		h, ok := m.Lookup(name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		return h.Handle(ctx, &dsat.Task{With: with, Attempt: attempt, Payload: []byte(`{"a":1}`)})
	}
	if r, err := run("echo", nil, 1); err != nil || string(r.Output) != `{"a":1}` {
		t.Fatalf("echo %s %v", r.Output, err)
	}
	start := time.Now()
	if r, err := run("sleep", map[string]any{"ms": 50}, 1); err != nil || string(r.Output) != `{"a":1}` || time.Since(start) < 50*time.Millisecond {
		t.Fatalf("sleep %s %v", r.Output, err)
	}
	if _, err := run("fail", map[string]any{"attempts": 2}, 2); err == nil {
		t.Fatal("fail attempts: 2 did not fail attempt 2")
	}
	if _, err := run("fail", map[string]any{"attempts": 2}, 3); err != nil {
		t.Fatalf("fail attempts: 2 failed attempt 3: %v", err)
	}
	if _, err := run("fail", map[string]any{"rate": 0}, 1); err != nil {
		t.Fatal("rate 0 failed")
	}
	if _, err := run("fail", map[string]any{"rate": 1, "message": "nope"}, 1); err == nil || err.Error() != "nope" {
		t.Fatalf("rate 1: %v", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	h, _ := m.Lookup("sleep")
	if _, err := h.Handle(cctx, &dsat.Task{With: map[string]any{"ms": 10000}}); !errors.Is(err, context.Canceled) {
		t.Fatalf("sleep ignores cancel: %v", err)
	}
}

func TestMuxMiddlewareAndSnooze(t *testing.T) {
	m := NewMux()
	var order []string
	m.Use(func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
			order = append(order, "outer")
			return next.Handle(ctx, t)
		})
	}, func(next Handler) Handler {
		return HandlerFunc(func(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
			order = append(order, "inner")
			return next.Handle(ctx, t)
		})
	})
	m.HandleFunc("h", func(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
		order = append(order, "handler")
		return dsat.Result{}, Snooze(time.Minute)
	})
	h, _ := m.Lookup("h")
	_, err := h.Handle(context.Background(), &dsat.Task{})
	var sn *SnoozeError
	if !errors.As(err, &sn) || sn.Delay != time.Minute {
		t.Fatalf("snooze error %v", err)
	}
	if strings.Join(order, ",") != "outer,inner,handler" {
		t.Fatalf("order %v", order)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate registration did not panic")
		}
	}()
	m.HandleFunc("h", nil)
}

// TestExecEnvIsMinimal: the process gets PATH, HOME, LANG, TZ, the DSAT_
// task variables, inherit_env and env, never the rest of the worker's
// environment (issue 13, item 3).
func TestExecEnvIsMinimal(t *testing.T) {
	t.Setenv("DSAT_API_TOKEN", "api-secret")
	t.Setenv("DSAT_REDIS_URL", "redis://:pw@host:6379")
	t.Setenv("HTTP_PROXY", "http://proxy:3128")
	t.Setenv("TZ", "UTC")
	h := &ExecHandler{MaxOutput: 1 << 20}
	const traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	env := func(with map[string]any) map[string]string {
		t.Helper()
		with["command"] = []any{"env"}
		task := execTask(with, `{}`)
		task.Trace = traceparent
		res, err := h.Handle(context.Background(), task)
		if err != nil {
			t.Fatal(err)
		}
		var text string
		if err := json.Unmarshal(res.Output, &text); err != nil {
			t.Fatalf("output %s", res.Output)
		}
		vars := map[string]string{}
		for _, l := range strings.Split(text, "\n") {
			if k, v, ok := strings.Cut(l, "="); ok {
				vars[k] = v
			}
		}
		return vars
	}
	got := env(map[string]any{"env": map[string]any{"GREETING": "hi"}})
	for _, k := range []string{"DSAT_API_TOKEN", "DSAT_REDIS_URL", "HTTP_PROXY"} {
		if _, ok := got[k]; ok {
			t.Errorf("the worker's %s leaked into the process: %v", k, got)
		}
	}
	if got["PATH"] != os.Getenv("PATH") || got["TZ"] != "UTC" || got["GREETING"] != "hi" || got["DSAT_STEP"] != "s" || got["DSAT_ATTEMPT"] != "1" ||
		got["TRACEPARENT"] != traceparent {
		t.Errorf("environment %v", got)
	}
	got = env(map[string]any{"inherit_env": []any{"HTTP_PROXY", "NOT_SET_ANYWHERE"}})
	if got["HTTP_PROXY"] != "http://proxy:3128" || got["DSAT_API_TOKEN"] != "" {
		t.Errorf("inherit_env: %v", got)
	}
	if _, ok := got["NOT_SET_ANYWHERE"]; ok {
		t.Errorf("an unset inherited variable appeared: %v", got)
	}
	// with.env wins over an inherited or base variable.
	if got = env(map[string]any{"inherit_env": []any{"HTTP_PROXY"}, "env": map[string]any{"HTTP_PROXY": "none"}}); got["HTTP_PROXY"] != "none" {
		t.Errorf("env over inherit_env: %v", got)
	}
}

func TestExecBadInheritEnv(t *testing.T) {
	h := &ExecHandler{MaxOutput: 1000}
	for _, tc := range []struct {
		with map[string]any
		want string
	}{
		{map[string]any{"command": []any{"ls"}, "inherit_env": "HOME"}, "with.inherit_env must be a list of variable names"},
		{map[string]any{"command": []any{"ls"}, "inherit_env": []any{"A=B"}}, `with.inherit_env: A=B is not a variable name`},
		{map[string]any{"command": []any{"ls"}, "inherit_env": []any{1}}, `with.inherit_env: 1 is not a variable name`},
		{map[string]any{"command": []any{"ls"}, "env": map[string]any{"A=B": "c"}}, `with.env: "A=B" is not a variable name`},
		{map[string]any{"command": []any{"ls"}, "inherit": []any{"HOME"}}, "with.inherit is not an exec setting (command, env, dir, inherit_env)"},
	} {
		if err := h.ValidateSettings(tc.with); err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("settings %v: %v, want %q", tc.with, err, tc.want)
		}
	}
}
