package workers

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestProcessStepInASatellite runs the process handler in a satellite:
// answers, a crash and a hang (each retried on a new process), errors
// with and without retry; the step's pool is kept to processes ×
// inflight, and Stop leaves no process behind.
func TestProcessStepInASatellite(t *testing.T) {
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, fmt.Sprintf(`
name: proc
version: 1.0.0
steps:
  a:
    handler: process
    with: {command: [%q], env: {%s: serve, GORACE: atexit_sleep_ms=0}, processes: 2, greeting: hi}
    timeout: 2s
    retries: 1
    backoff: {initial: 10ms, max: 20ms}
`, exe, testWorkerEnv))
		m := NewMux()
		RegisterBuiltins(m, 0)
		s, err := New(b.c, m, b.fast("s1"))
		if err != nil {
			t.Fatal(err)
		}
		if r := s.steps[0]; r.concMin != 1 || r.concMax != 2 {
			t.Fatalf("pool bounds %d..%d, want 1..2 (processes 2 × inflight 1)", r.concMin, r.concMax)
		}
		if err := s.Start(b.ctx); err != nil {
			t.Fatal(err)
		}
		stopped := false
		t.Cleanup(func() {
			if !stopped {
				_ = s.Stop(context.Background())
			}
		})
		cases := []struct {
			payload, status string
			attempts        int
			event, detail   string // an event of the task and a text in its detail
		}{
			{`{"echo": 1}`, dsat.StatusSucceeded, 1, "", ""},
			{`{"crash": 1}`, dsat.StatusSucceeded, 2, "ERROR", "process exited with status 1: crashing on purpose"},
			{`{"hang": 1}`, dsat.StatusSucceeded, 2, "TIMEOUT", "timeout of 2s"},
			{`{"error": "bad input", "retry": false}`, dsat.StatusFailed, 1, "ERROR", "bad input"},
			{`{"error": "flaky"}`, dsat.StatusFailed, 2, "ERROR", "flaky"},
		}
		var ids []string
		for _, tc := range cases {
			ids = append(ids, b.submit(1, tc.payload)...)
		}
		pids := map[int]bool{}
		for i, st := range b.wait(ids, 10*time.Second) {
			tc := cases[i]
			if st.Status != tc.status || st.Steps["a"].Attempts != tc.attempts {
				t.Errorf("%s: %s after %d attempts, want %s after %d (%+v)", tc.payload, st.Status, st.Steps["a"].Attempts, tc.status, tc.attempts, st)
			}
			var out testAnswer
			if st.Status == dsat.StatusSucceeded {
				if err := json.Unmarshal(st.Result, &out); err != nil || out.Settings["greeting"] != "hi" || out.Attempt != tc.attempts {
					t.Errorf("%s: result %s", tc.payload, st.Result)
				}
				pids[out.PID] = true
			}
			if tc.event != "" && !hasEvent(t, b, ids[i], tc.event, tc.detail) {
				t.Errorf("%s: no %s event with %q", tc.payload, tc.event, tc.detail)
			}
		}
		stopped = true
		if err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		for pid := range pids {
			waitGone(t, pid)
		}
	})
}

func hasEvent(t *testing.T, b *bundle, id, event, detail string) bool {
	t.Helper()
	evs, err := b.c.History(b.ctx, id, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.Event == event && strings.Contains(string(e.Detail), detail) {
			return true
		}
	}
	return false
}

// TestProcessExamples runs examples/process end to end in a satellite:
// the Python and the Node worker, each for a good and a bad payload.
func TestProcessExamples(t *testing.T) {
	for _, ex := range []struct{ file, program, require, install string }{
		{"upper_python.yaml", "python3", "DSAT_REQUIRE_PYTHON", "apt-get install python3"},
		{"upper_node.yaml", "node", "DSAT_REQUIRE_NODE", "apt-get install nodejs"},
	} {
		t.Run(ex.program, func(t *testing.T) {
			if _, err := exec.LookPath(ex.program); err != nil {
				if os.Getenv(ex.require) == "1" {
					t.Fatalf("%s not found and %s=1", ex.program, ex.require)
				}
				t.Skipf("%s not found: the example's worker needs it (%s; %s=1 makes this a failure)", ex.program, ex.install, ex.require)
			}
			p, err := dsat.LoadPipelineFile(filepath.Join("..", "examples", "process", ex.file))
			if err != nil {
				t.Fatal(err)
			}
			ResolveExecDirs([]*dsat.Pipeline{p}, "process")
			rdb, _ := redistest.Backends()[0].New(t)
			c, err := dsat.NewClient(rdb, dsat.Config{}, p)
			if err != nil {
				t.Fatal(err)
			}
			b := &bundle{t: t, ctx: context.Background(), rdb: rdb, c: c, p: p, log: &logBuffer{}}
			m := NewMux()
			RegisterBuiltins(m, 0)
			b.start(m, b.fast("s1"))
			ids := b.submit(1, `{"text": "hello"}`)
			ids = append(ids, b.submit(1, `{"n": 1}`)...)
			sts := b.wait(ids, 10*time.Second)
			var out struct{ Text string }
			if sts[0].Status != dsat.StatusSucceeded || json.Unmarshal(sts[0].Result, &out) != nil || out.Text != "HELLO!" {
				t.Fatalf("good payload: %+v", sts[0])
			}
			if sts[1].Status != dsat.StatusFailed || sts[1].Steps["upper"].Attempts != 1 || !strings.Contains(sts[1].Error, `the payload needs a "text" string`) {
				t.Fatalf("bad payload: %+v", sts[1])
			}
		})
	}
}
