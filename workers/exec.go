package workers

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
)

// ExecHandler runs one process per token, so steps can be written in any
// language. Settings: with: {command: [argv...], env: {K: V}, dir: D,
// inherit_env: [NAMES]}. The process does not inherit the worker's
// environment (it holds secrets such as DSAT_REDIS_URL): it gets PATH,
// HOME, LANG and TZ from it, DSAT_TASK, DSAT_STEP and DSAT_ATTEMPT, the
// variables named in inherit_env, then env. The payload arrives on stdin; stdout is the output (used as is when it is
// JSON, else as a JSON string). A non-zero exit is an error carrying the
// tail of stderr. The process may report its progress on file descriptor
// 3: one JSON line {"progress": 0.4, "message": "11/54 pages"} per report
// (see Progress; a bad line is logged and ignored). When the step's timeout passes (or the task is
// cancelled), the whole process group is killed.
type ExecHandler struct {
	// MaxOutput bounds stdout; more is an error.
	MaxOutput int
}

// stderrTail is how much of stderr an error carries.
const stderrTail = 1024

type execSettings struct {
	argv    []string
	env     []string
	inherit []string
	dir     string
}

// baseEnv are the worker's variables every exec process gets (when set).
var baseEnv = []string{"PATH", "HOME", "LANG", "TZ"}

// execSettingNames are the settings exec knows.
var execSettingNames = []string{"command", "env", "dir", "inherit_env"}

// validEnvName: what a variable name may be (no '=' or NUL, not empty).
func validEnvName(k string) bool {
	return k != "" && !strings.ContainsAny(k, "=\x00")
}

// ValidateSettings checks command, env, dir and inherit_env.
func (h *ExecHandler) ValidateSettings(with map[string]any) error {
	_, err := parseExecSettings(with)
	return err
}

func parseExecSettings(with map[string]any) (execSettings, error) {
	s, err := parseCommandSettings(with)
	if err != nil {
		return s, err
	}
	for k := range with {
		if !slices.Contains(execSettingNames, k) {
			return s, fmt.Errorf("with.%s is not an exec setting (%s)", k, strings.Join(execSettingNames, ", "))
		}
	}
	return s, nil
}

// parseCommandSettings reads command, env, inherit_env and dir (the
// settings exec and process share) and leaves any other key alone.
func parseCommandSettings(with map[string]any) (execSettings, error) {
	var s execSettings
	raw, ok := with["command"].([]any)
	if !ok || len(raw) == 0 {
		return s, errors.New(`with.command must be a non-empty list such as [python3, step.py]`)
	}
	for _, a := range raw {
		str, ok := a.(string)
		if !ok {
			return s, fmt.Errorf("with.command: %v is not a string", a)
		}
		s.argv = append(s.argv, str)
	}
	if env, ok := with["env"]; ok {
		m, ok := env.(map[string]any)
		if !ok {
			return s, errors.New("with.env must be a mapping of NAME: value")
		}
		for k, v := range m {
			if !validEnvName(k) {
				return s, fmt.Errorf("with.env: %q is not a variable name", k)
			}
			s.env = append(s.env, fmt.Sprintf("%s=%v", k, v))
		}
	}
	if inh, ok := with["inherit_env"]; ok {
		list, ok := inh.([]any)
		if !ok {
			return s, errors.New("with.inherit_env must be a list of variable names of the worker to pass on, such as [HTTP_PROXY, AWS_REGION]")
		}
		for _, a := range list {
			name, ok := a.(string)
			if !ok || !validEnvName(name) {
				return s, fmt.Errorf("with.inherit_env: %v is not a variable name", a)
			}
			s.inherit = append(s.inherit, name)
		}
	}
	if d, ok := with["dir"]; ok {
		if s.dir, ok = d.(string); !ok {
			return s, errors.New("with.dir must be a string")
		}
	}
	return s, nil
}

// Handle runs the command.
func (h *ExecHandler) Handle(ctx context.Context, t *dsat.Task) (dsat.Result, error) {
	s, err := parseExecSettings(t.With)
	if err != nil {
		return dsat.Result{}, fmt.Errorf("%w: %v", SkipRetry, err)
	}
	cmd := exec.CommandContext(ctx, s.argv[0], s.argv[1:]...)
	cmd.Dir = s.dir
	vars := []string{"DSAT_TASK=" + t.ID, "DSAT_STEP=" + t.Step, fmt.Sprintf("DSAT_ATTEMPT=%d", t.Attempt)}
	if t.Trace != "" {
		vars = append(vars, "TRACEPARENT="+t.Trace) // the step attempt's span, with tracing on
	}
	cmd.Env = s.environ(vars...)
	cmd.Stdin = bytes.NewReader(t.Payload)
	stdout := &limitedBuffer{max: h.MaxOutput}
	stderr := &tailBuffer{max: stderrTail}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err = runWithProgress(ctx, cmd)
	if ctx.Err() != nil {
		return dsat.Result{}, ctx.Err()
	}
	if stdout.overflow {
		return dsat.Result{}, fmt.Errorf("output larger than %d bytes", h.MaxOutput)
	}
	if err != nil {
		if ferr := unrunnable(s.argv[0], err); ferr != nil {
			return dsat.Result{}, ferr
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return dsat.Result{}, fmt.Errorf("%s exited with code %d: %s", s.argv[0], ee.ExitCode(), bytes.TrimSpace(stderr.Bytes()))
		}
		return dsat.Result{}, fmt.Errorf("exec %s: %w", s.argv[0], err)
	}
	out := bytes.TrimSpace(stdout.buf.Bytes())
	if !json.Valid(out) {
		out, _ = json.Marshal(string(out))
	}
	return dsat.Result{Output: out}, nil
}

// unrunnable is the error for a start that failed because the program
// (or dir) is missing or may not be run, or nil for any other error. A
// retry cannot help: the token goes to the dead letters at once.
func unrunnable(program string, err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: exec %s: %w; install it on the worker's machine or fix with.command", SkipRetry, program, err)
	}
	return nil
}

// runWithProgress runs cmd with a pipe as its file descriptor 3, from
// which it reads progress reports, one JSON line each:
// {"progress": 0.4, "message": "11/54 pages"} (progressLines).
func runWithProgress(ctx context.Context, cmd *exec.Cmd) error {
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("progress pipe: %w", err)
	}
	cmd.ExtraFiles = []*os.File{pw}
	done := make(chan struct{})
	go func() {
		defer close(done)
		progressLines(ctx, pr)
	}()
	err = cmd.Start()
	pw.Close()
	if err == nil {
		err = cmd.Wait()
	}
	// A child of the process may still hold the pipe: read what is there
	// for a moment, then stop.
	t := time.NewTimer(100 * time.Millisecond)
	select {
	case <-done:
	case <-t.C:
	}
	t.Stop()
	pr.Close()
	<-done
	return err
}

// maxProgressLine bounds a progress line read from a process; a longer
// line is skipped with a log line.
const maxProgressLine = 4096

// progressReport is one progress line of a process.
type progressReport struct {
	Progress *float64 `json:"progress"`
	Message  string   `json:"message"`
}

// progressLines reads progress lines from r until it ends and reports
// them (progressAsync); a bad line is logged (the first few) and ignored.
func progressLines(ctx context.Context, r io.Reader) {
	br := bufio.NewReaderSize(r, maxProgressLine)
	bad := 0
	complain := func(why string, line []byte) {
		if bad++; bad <= 3 {
			zerolog.Ctx(ctx).Warn().Str("line", clip(string(line), 200)).Msg("progress line ignored (file descriptor 3): " + why)
		}
	}
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			complain(fmt.Sprintf("longer than %d bytes", maxProgressLine), line)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return
			}
			continue
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			var rep progressReport
			if jerr := json.Unmarshal(t, &rep); jerr != nil || rep.Progress == nil {
				complain(`not a JSON object with a number "progress"`, t)
			} else {
				progressAsync(ctx, *rep.Progress, rep.Message)
			}
		}
		if err != nil {
			return
		}
	}
}

// environ is the process's environment: never the worker's whole one.
// vars (DSAT_ variables) come after the inherited ones, with.env last.
func (s execSettings) environ(vars ...string) []string {
	var env []string
	for _, k := range append(slices.Clone(baseEnv), s.inherit...) {
		if v, ok := os.LookupEnv(k); ok {
			env = append(env, k+"="+v)
		}
	}
	env = append(env, vars...)
	return append(env, s.env...)
}

// limitedBuffer keeps up to max bytes and notes an overflow.
type limitedBuffer struct {
	buf      bytes.Buffer
	max      int
	overflow bool
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	if b.buf.Len()+len(p) > b.max {
		b.overflow = true
		return 0, errors.New("output too large")
	}
	return b.buf.Write(p)
}

// tailBuffer keeps the last max bytes written.
type tailBuffer struct {
	buf []byte
	max int
}

func (b *tailBuffer) Write(p []byte) (int, error) {
	b.buf = append(b.buf, p...)
	if len(b.buf) > b.max {
		b.buf = append(b.buf[:0], b.buf[len(b.buf)-b.max:]...)
	}
	return len(p), nil
}

func (b *tailBuffer) Bytes() []byte { return b.buf }

// ResolveExecDirs makes the steps of the named handlers (exec, process)
// run next to their pipeline file: a step without with.dir gets the
// file's folder, and a relative dir is taken from that folder. Call it on
// pipelines loaded from files.
func ResolveExecDirs(pipelines []*dsat.Pipeline, handlerNames ...string) {
	for _, p := range pipelines {
		if p.File != "" {
			ResolveExecDirsIn(filepath.Dir(p.File), []*dsat.Pipeline{p}, handlerNames...)
		}
	}
}

// ResolveExecDirsIn is ResolveExecDirs with dir as the folder of every
// pipeline: for pipelines not loaded from a file of their own, such as a
// version loaded from its record (Client.DrainingPipelines), whose file
// was in the pipelines folder.
func ResolveExecDirsIn(dir string, pipelines []*dsat.Pipeline, handlerNames ...string) {
	base, err := filepath.Abs(dir)
	if err != nil {
		return
	}
	for _, p := range pipelines {
		for _, s := range p.Steps {
			if !slices.Contains(handlerNames, s.Handler) {
				continue
			}
			if s.With == nil {
				s.With = map[string]any{}
			}
			d, _ := s.With["dir"].(string)
			switch {
			case d == "":
				s.With["dir"] = base
			case !filepath.IsAbs(d):
				s.With["dir"] = filepath.Join(base, d)
			}
		}
	}
}
