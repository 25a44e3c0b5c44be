package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// binPath is the dsat binary the end-to-end tests run: in the full suite
// (DSAT_INTEGRATION=1, as in CI) a build with the race detector, for the
// long-running processes (dev, serve, worker), since a race build costs
// about 15 s here. cliPath is a plain build for the short CLI calls (a
// race-enabled binary takes about a second to start here). In the fast
// `go test ./...` both are this test binary, which holds all of dsat's
// code and runs as dsat in the processes the tests start (see TestMain):
// building dsat once more would cost seconds of a cold build.
var binPath, cliPath string

// asDsat, set in the environment of the processes the fast suite starts,
// makes this test binary run dsat's main instead of the tests. (Not
// DSAT_*: bench --mode deployed drops those from its children's
// environment.)
const asDsat = "GO_TEST_BINARY_RUNS_DSAT"

func TestMain(m *testing.M) {
	// go test starts a test binary with -test.* flags first; started with
	// asDsat=1 or with dsat's arguments, this binary is dsat: a process an
	// end-to-end test started, or one that dsat itself started (bench
	// --mode deployed runs os.Executable()). It never runs the tests
	// there, which would start processes again.
	if os.Getenv(asDsat) == "1" || len(os.Args) > 1 && !strings.HasPrefix(os.Args[1], "-test.") {
		main() // exits
	}
	redistest.WaitingTests(16)
	if !redistest.Integration() && !raceEnabled {
		self, err := os.Executable()
		if err != nil {
			panic(err)
		}
		binPath, cliPath = self, self
		if err := os.Setenv(asDsat, "1"); err != nil { // inherited by the processes the tests start
			panic(err)
		}
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "dsat-bin-")
	if err != nil {
		panic(err)
	}
	binPath, cliPath = filepath.Join(dir, "dsat-race"), filepath.Join(dir, "dsat")
	if out, err := exec.Command("go", "build", "-o", cliPath, ".").CombinedOutput(); err != nil {
		panic(string(out))
	}
	if !redistest.Integration() {
		binPath = cliPath
	} else if out, err := exec.Command("go", "build", "-race", "-o", binPath, ".").CombinedOutput(); err != nil {
		// -race needs cgo; use the plain build then.
		fmt.Fprintf(os.Stderr, "race build failed, using the plain binary: %s\n", out)
		binPath = cliPath
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// runCLI runs the command in-process and returns exit code, stdout, stderr.
func runCLI(t *testing.T, env map[string]string, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &cliEnv{stdout: &out, stderr: &errb, stdin: strings.NewReader(stdin), getenv: func(k string) string { return env[k] }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, e, args)
	return code, out.String(), errb.String()
}

// proc is a dsat child process.
type proc struct {
	cmd       *exec.Cmd
	stdout    *lineBuffer
	stderr    *lineBuffer
	interrupt func() // sends os.Interrupt, once
}

type lineBuffer struct {
	lines chan string
}

func (l *lineBuffer) pump(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		select {
		case l.lines <- sc.Text():
		default:
		}
	}
	close(l.lines)
}

// start runs the binary; it is killed when the test ends.
func start(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(binPath, args...)
	cmd.Env = append(os.Environ(), env...)
	so, _ := cmd.StdoutPipe()
	se, _ := cmd.StderrPipe()
	p := &proc{cmd: cmd, stdout: &lineBuffer{lines: make(chan string, 10000)}, stderr: &lineBuffer{lines: make(chan string, 10000)}}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go p.stdout.pump(so)
	go p.stderr.pump(se)
	p.interrupt = sync.OnceFunc(func() { _ = cmd.Process.Signal(os.Interrupt) })
	t.Cleanup(func() {
		p.interrupt()
		done := make(chan struct{})
		go func() { _ = cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
		}
	})
	return p
}

// stopTogether interrupts the processes at once when the test ends, so
// that their graceful stops (each waits out a blocking read) overlap
// instead of adding up in start's cleanups.
func stopTogether(t *testing.T, ps ...*proc) {
	t.Cleanup(func() { // runs before the cleanups start registered earlier
		for _, p := range ps {
			p.interrupt()
		}
	})
}

// waitLine returns the first captured group of re in the process output.
func waitLine(t *testing.T, lines <-chan string, re string, limit time.Duration) string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(limit)
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("process output ended before a line matching %s", re)
			}
			if m := rx.FindStringSubmatch(l); m != nil {
				if len(m) > 1 {
					return m[1]
				}
				return l
			}
		case <-deadline:
			t.Fatalf("no line matching %s within %s", re, limit)
		}
	}
}

// cli runs the binary to completion.
func cli(t *testing.T, env []string, args ...string) (int, string, string) {
	t.Helper()
	r := runCLIProcess(env, args...)
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.code, r.out, r.errs
}

// cliResult is one dsat CLI process's exit code and output, or err when
// it could not run.
type cliResult struct {
	code      int
	out, errs string
	err       error
}

func runCLIProcess(env []string, args ...string) cliResult {
	cmd := exec.Command(cliPath, args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := cliResult{out: out.String(), errs: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else {
		r.err = err
	}
	return r
}

// cliEach runs one CLI process per element of each (args(i) gives its
// arguments), up to 4 at a time, and returns their results in order.
func cliEach(t *testing.T, env []string, n int, args func(i int) []string) []cliResult {
	t.Helper()
	out := make([]cliResult, n)
	sem := make(chan struct{}, 4)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			out[i] = runCLIProcess(env, args(i)...)
		})
	}
	wg.Wait()
	for _, r := range out {
		if r.err != nil {
			t.Fatal(r.err)
		}
	}
	return out
}
