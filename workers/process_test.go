package workers

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
)

// procBundle is one process step opened outside a satellite: the unit
// tests call its handler directly.
type procBundle struct {
	t    *testing.T
	pool *procPool
	log  *logBuffer
}

// openProcess opens a process step running the test binary as its worker
// (testWorker, in mode) with the given extra settings; Close runs at the
// test's end.
func openProcess(t *testing.T, mode string, with map[string]any, maxOutput int) *procBundle {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if with == nil {
		with = map[string]any{}
	}
	with["command"] = []any{exe}
	with["env"] = testWorkerVars(mode)
	log := &logBuffer{}
	st := &dsat.Step{Name: "s", Timeout: 5 * time.Second, With: with}
	sh, err := (&ProcessHandler{MaxOutput: maxOutput}).OpenStep(StepInfo{Pipeline: &dsat.Pipeline{Name: "p"}, Step: st,
		Satellite: "sat", Logger: zerolog.New(log).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sh.Close(context.Background()) })
	return &procBundle{t: t, pool: sh.(*procPool), log: log}
}

// testWorkerVars is the test worker's environment (with.env): its mode,
// and no second of sleep at exit when built with -race.
func testWorkerVars(mode string) map[string]any {
	return map[string]any{testWorkerEnv: mode, "GORACE": "atexit_sleep_ms=0"}
}

// testAnswer is the test worker's output.
type testAnswer struct {
	Echo     any             `json:"echo"`
	PID      int             `json:"pid"`
	Attempt  int             `json:"attempt"`
	Task     string          `json:"task"`
	Pipeline string          `json:"pipeline"`
	Step     string          `json:"step"`
	Settings map[string]any  `json:"settings"`
	Payload  json.RawMessage `json:"payload"`
	EnvStep  string          `json:"env_step"`
	EnvLeak  string          `json:"env_leak"`
	Trace    string          `json:"traceparent"`
	Seq      int             `json:"seq"`      // its answer's rank in the process
	MaxHeld  int             `json:"max_held"` // the most requests the process held at once
}

// testTraceparent is the trace context of the test tokens.
const testTraceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"

// call runs one token through the step within limit.
func (b *procBundle) call(task, payload string, limit time.Duration) (testAnswer, error) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	return b.callCtx(ctx, task, payload)
}

func (b *procBundle) callCtx(ctx context.Context, task, payload string) (testAnswer, error) {
	var a testAnswer
	res, err := b.pool.Handle(ctx, &dsat.Task{ID: task, Pipeline: "p", Step: "s", Attempt: 1, Payload: []byte(payload), Trace: testTraceparent})
	if err == nil {
		if jerr := json.Unmarshal(res.Output, &a); jerr != nil {
			b.t.Fatalf("output %s: %v", res.Output, jerr)
		}
	}
	return a, err
}

func (b *procBundle) mustCall(payload string) testAnswer {
	b.t.Helper()
	a, err := b.call("t", payload, 3*time.Second)
	if err != nil {
		b.t.Fatalf("%s: %v", payload, err)
	}
	return a
}

// waitGone waits until no process has the pid.
func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			t.Fatalf("process %d still there", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestProcessInflightAnswersInAnyOrder: with inflight 3 one process holds
// three requests and answers them in another order than it got them (each
// waits for the next one's answer), each matched to its request by id;
// with inflight 1 it never holds two.
func TestProcessInflightAnswersInAnyOrder(t *testing.T) {
	for _, tc := range []struct {
		inflight int
		payloads []string
	}{
		{3, []string{`{"echo": 0, "wait_for": 1}`, `{"echo": 1, "wait_for": 2}`, `{"echo": 2, "hold": 3}`}},
		{1, []string{`{"echo": 0, "sleep_ms": 20}`, `{"echo": 1, "sleep_ms": 20}`, `{"echo": 2, "sleep_ms": 20}`}},
	} {
		t.Run(fmt.Sprint("inflight ", tc.inflight), func(t *testing.T) {
			b := openProcess(t, "serve", map[string]any{"inflight": tc.inflight}, 0)
			pid := b.mustCall(`{}`).PID
			answers := make([]testAnswer, len(tc.payloads))
			var wg sync.WaitGroup
			for i, payload := range tc.payloads {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var err error
					answers[i], err = b.call(fmt.Sprint("t", i), payload, 5*time.Second)
					if a := answers[i]; err != nil || a.Echo != float64(i) || a.Task != fmt.Sprint("t", i) || a.PID != pid {
						t.Errorf("request %d: %+v, %v", i, a, err)
					}
				}()
			}
			wg.Wait()
			for i, a := range answers {
				if a.MaxHeld != tc.inflight {
					t.Errorf("request %d: the process held up to %d requests, want %d", i, a.MaxHeld, tc.inflight)
				}
			}
			if tc.inflight == 3 && !(answers[2].Seq < answers[1].Seq && answers[1].Seq < answers[0].Seq) {
				t.Errorf("answers in order %d, %d, %d; want the last request's first", answers[0].Seq, answers[1].Seq, answers[2].Seq)
			}
		})
	}
}

// TestProcessRequestCarriesTheToken: the request line's fields, settings
// (with: minus the handler's own) and the process's environment.
func TestProcessRequestCarriesTheToken(t *testing.T) {
	t.Setenv("DSAT_REDIS_URL", "redis://:secret@host:6379")
	b := openProcess(t, "serve", map[string]any{"processes": 1, "inflight": 2, "model": "small", "limits": map[string]any{"n": 3}}, 0)
	a := b.mustCall(`{"echo": "hi", "x": [1, 2]}`)
	if a.Task != "t" || a.Pipeline != "p" || a.Step != "s" || a.Attempt != 1 || a.EnvStep != "s" || a.EnvLeak != "" ||
		a.Trace != testTraceparent {
		t.Fatalf("answer %+v", a)
	}
	if got, _ := json.Marshal(a.Settings); string(got) != `{"limits":{"n":3},"model":"small"}` {
		t.Fatalf("settings %s", got)
	}
	if string(a.Payload) != `{"echo":"hi","x":[1,2]}` {
		t.Fatalf("payload %s", a.Payload)
	}
	res, err := b.pool.Handle(context.Background(), &dsat.Task{ID: "t", Attempt: 2, Payload: []byte("plain text")})
	if err != nil || !strings.Contains(string(res.Output), `"payload":"plain text"`) || !strings.Contains(string(res.Output), `"attempt":2`) {
		t.Fatalf("a payload that is not JSON: %s, %v", res.Output, err)
	}
}

func TestProcessErrorAnswers(t *testing.T) {
	b := openProcess(t, "serve", nil, 0)
	pid := b.mustCall(`{}`).PID
	for _, tc := range []struct {
		payload, msg string
		final        bool
	}{
		{`{"error": "model not ready"}`, "model not ready", false},
		{`{"error": "model not ready", "retry": true}`, "model not ready", false},
		{`{"error": "no text field", "retry": false}`, "skip retry: no text field", true},
	} {
		_, err := b.call("t", tc.payload, 3*time.Second)
		if err == nil || err.Error() != tc.msg || errors.Is(err, SkipRetry) != tc.final {
			t.Errorf("%s: %v, want %q (final %v)", tc.payload, err, tc.msg, tc.final)
		}
	}
	if b.mustCall(`{}`).PID != pid {
		t.Fatal("an error answer restarted the process")
	}
}

// TestProcessBrokenProtocolRestarts: a line that is not an answer, or
// longer than the max output allows, fails the request and restarts the
// process; an output over the max within the line is an error only.
func TestProcessBrokenProtocolRestarts(t *testing.T) {
	b := openProcess(t, "serve", nil, 1000)
	pid := b.mustCall(`{}`).PID
	for _, tc := range []struct {
		payload, want string
		restart       bool
	}{
		{`{"junk": true}`, `process restarted: it wrote a line that is not a JSON answer`, true},
		{`{"big": 5000}`, `process restarted: it wrote a line longer than 2024 bytes`, true},
		{`{"big": 1200}`, `output larger than 1000 bytes`, false},
	} {
		_, err := b.call("t", tc.payload, 3*time.Second)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Fatalf("%s: %v, want %q", tc.payload, err, tc.want)
		}
		next := b.mustCall(`{}`).PID
		if (next != pid) != tc.restart {
			t.Fatalf("%s: pid %d then %d, restart %v", tc.payload, pid, next, tc.restart)
		}
		if tc.restart {
			waitGone(t, pid)
		}
		pid = next
	}
	if !strings.Contains(b.log.String(), "broke the protocol") {
		t.Fatal("the broken protocol was not logged")
	}
}

// TestProcessCrashFailsWhatItHeld: every request the process held fails
// with its exit status and stderr; the next one gets a new process.
func TestProcessCrashFailsWhatItHeld(t *testing.T) {
	b := openProcess(t, "serve", map[string]any{"inflight": 2}, 0)
	pid := b.mustCall(`{}`).PID
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, payload := range []string{`{"sleep_ms": 2000}`, `{"crash": 1, "sleep_ms": 20}`} {
		wg.Add(1)
		go func() { defer wg.Done(); _, errs[i] = b.call("t", payload, 3*time.Second) }()
	}
	wg.Wait()
	for i, err := range errs {
		if err == nil || err.Error() != "process exited with status 1: crashing on purpose" || errors.Is(err, SkipRetry) {
			t.Errorf("request %d: %v", i, err)
		}
	}
	if next := b.mustCall(`{}`).PID; next == pid {
		t.Fatal("not restarted")
	}
	if !strings.Contains(b.log.String(), "process ended; starting another") {
		t.Fatal("restart not logged")
	}
}

// TestProcessTimeoutKillsAndRestarts: a request past its deadline kills
// the process (and fails the other request it held); a cancelled one is
// abandoned, the process goes on.
func TestProcessTimeoutKillsAndRestarts(t *testing.T) {
	b := openProcess(t, "serve", map[string]any{"inflight": 2}, 0)
	b.pool.timeout = 200 * time.Millisecond
	pid := b.mustCall(`{}`).PID
	var other error
	done := make(chan struct{})
	go func() { defer close(done); _, other = b.call("t2", `{"sleep_ms": 2000}`, 3*time.Second) }()
	start := time.Now()
	_, err := b.call("t1", `{"hang": 1}`, 200*time.Millisecond)
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > time.Second {
		t.Fatalf("hung request: %v after %s", err, time.Since(start))
	}
	<-done
	if other == nil || other.Error() != "process killed after the step timeout of 200ms" {
		t.Fatalf("the other request: %v", other)
	}
	waitGone(t, pid)
	if b.mustCall(`{}`).PID == pid {
		t.Fatal("not restarted")
	}
}

func TestProcessCancelAbandonsTheRequest(t *testing.T) {
	b := openProcess(t, "serve", nil, 0)
	pid := b.mustCall(`{}`).PID
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(30*time.Millisecond, cancel)
	start := time.Now()
	if _, err := b.callCtx(ctx, "t", `{"sleep_ms": 1000, "echo": "late"}`); !errors.Is(err, context.Canceled) || time.Since(start) > 700*time.Millisecond {
		t.Fatalf("cancelled request: %v after %s", err, time.Since(start))
	}
	// inflight 1: the next request waits for the abandoned one's answer,
	// which is dropped; the same process serves it.
	if a := b.mustCall(`{"echo": "next"}`); a.PID != pid || a.Echo != "next" {
		t.Fatalf("next answer %+v (pid %d)", a, pid)
	}
}

// TestProcessStartCrashBacksOff: a process that dies at start is started
// again after 100ms, 200ms, 400ms...; once the next start is after the
// request's deadline, the request fails at once with the last error.
func TestProcessStartCrashBacksOff(t *testing.T) {
	b := openProcess(t, "die", nil, 0)
	start := time.Now()
	var errs []string
	for {
		_, err := b.call("t", `{}`, 250*time.Millisecond)
		if err == nil {
			t.Fatal("a dying process answered")
		}
		errs = append(errs, err.Error())
		if strings.HasPrefix(err.Error(), "no process running") || time.Since(start) > 2*time.Second {
			break
		}
	}
	last := errs[len(errs)-1]
	if !strings.HasPrefix(last, "no process running (the last one: process exited with status 1: cannot load the model); the next starts in") {
		t.Fatalf("errors %q", errs)
	}
	for _, e := range errs[:len(errs)-1] {
		if e != "process exited with status 1: cannot load the model" && e != context.DeadlineExceeded.Error() {
			t.Fatalf("errors %q", errs)
		}
	}
	if n := strings.Count(b.log.String(), "process started"); n < 2 || n > 5 { // a loaded machine starts the process slowly: 2
		t.Fatalf("%d starts in %s, want 2 to 5 (100, 200, 400ms apart)", n, time.Since(start))
	}
}

func TestProcessMissingProgramIsFinal(t *testing.T) {
	st := &dsat.Step{Name: "s", Timeout: time.Second, With: map[string]any{"command": []any{"dsat-no-such-program"}}}
	sh, err := (&ProcessHandler{}).OpenStep(StepInfo{Pipeline: &dsat.Pipeline{Name: "p"}, Step: st})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for i := 0; i < 2; i++ { // the first meets the start, the second the record of it
		_, err := sh.Handle(ctx, &dsat.Task{ID: "t", Attempt: 1, Payload: []byte(`{}`)})
		if !errors.Is(err, SkipRetry) || !strings.Contains(err.Error(), "install it") {
			t.Fatalf("call %d: %v", i, err)
		}
	}
}

// TestProcessStderrAndProgressAreLogged: stderr lines carry the task
// while the process holds one request; progress lines go to debug (and
// to the token's reporter: TestProgressProcess).
func TestProcessStderrAndProgressAreLogged(t *testing.T) {
	b := openProcess(t, "serve", nil, 0)
	if _, err := b.callCtx(zerolog.New(b.log).Level(zerolog.DebugLevel).WithContext(context.Background()), "t42", `{"stderr": "loading the model", "progress": true, "sleep_ms": 50}`); err != nil {
		t.Fatal(err)
	}
	var stderr, progress bool
	for _, l := range strings.Split(b.log.String(), "\n") {
		stderr = stderr || strings.Contains(l, `"message":"loading the model"`) && strings.Contains(l, `"task":"t42"`) && strings.Contains(l, `"stream":"stderr"`)
		progress = progress || strings.Contains(l, `"level":"debug"`) && strings.Contains(l, `"progress":0.5`) && strings.Contains(l, `"note":"half way"`)
	}
	if !stderr || !progress {
		t.Fatalf("stderr logged %v, progress logged %v:\n%s", stderr, progress, b.log.String())
	}
}

// TestProcessCloseKillsAProcessThatStays: Close closes stdin; a process
// that does not exit is killed when Close's context ends.
func TestProcessCloseKillsAProcessThatStays(t *testing.T) {
	for _, mode := range []string{"serve", "stubborn"} {
		t.Run(mode, func(t *testing.T) {
			b := openProcess(t, mode, map[string]any{"processes": 2}, 0)
			pid := b.mustCall(`{}`).PID
			limit := 300 * time.Millisecond
			if mode == "serve" {
				limit = 5 * time.Second // it exits long before
			}
			ctx, cancel := context.WithTimeout(context.Background(), limit)
			defer cancel()
			start := time.Now()
			if err := b.pool.Close(ctx); err != nil {
				t.Fatal(err)
			}
			took := time.Since(start)
			killed := strings.Contains(b.log.String(), "did not exit within the shutdown timeout")
			if killed != (mode == "stubborn") || took > limit+time.Second || mode == "stubborn" && took < limit-50*time.Millisecond {
				t.Fatalf("Close took %s, killed %v", took, killed)
			}
			waitGone(t, pid)
			if _, err := b.call("t", `{}`, time.Second); !errors.Is(err, errPoolClosed) {
				t.Fatalf("after Close: %v", err)
			}
		})
	}
}

func TestProcessSettings(t *testing.T) {
	h := &ProcessHandler{}
	for _, tc := range []struct {
		with map[string]any
		want string
	}{
		{map[string]any{"command": []any{"python3", "w.py"}, "processes": 4, "inflight": 2, "model": "x"}, ""},
		{map[string]any{"processes": 4}, "with.command must be a non-empty list"},
		{map[string]any{"command": []any{"w"}, "processes": 0}, "with.processes must be a whole number from 1 to 256"},
		{map[string]any{"command": []any{"w"}, "inflight": "many"}, "with.inflight must be a whole number from 1 to 1024"},
		{map[string]any{"command": []any{"w"}, "env": "x"}, "with.env must be a mapping"},
	} {
		err := h.ValidateSettings(tc.with)
		if tc.want == "" && err != nil || tc.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tc.want)) {
			t.Errorf("%v: %v, want %q", tc.with, err, tc.want)
		}
	}
	if _, err := h.Handle(context.Background(), &dsat.Task{}); !errors.Is(err, SkipRetry) {
		t.Fatalf("Handle outside a satellite: %v", err)
	}
	var names []string
	names = append(names, processSettingNames...)
	sort.Strings(names)
	if strings.Join(names, ",") != "command,dir,env,inflight,inherit_env,processes" {
		t.Fatalf("setting names %v", names)
	}
}
