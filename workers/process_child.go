package workers

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/rs/zerolog"
)

// child is one running process of a procPool: three goroutines (stdin
// writer, stdout and stderr readers), owned by the slot's supervisor,
// which waits for them in wait.
type child struct {
	p       *procPool
	cmd     *exec.Cmd
	pid     int
	started time.Time
	log     zerolog.Logger
	// in holds the request lines to write; the pool closes it (Close) to
	// close stdin. Its room (inflight) is never short: each line is a
	// pending call's.
	in       chan []byte
	exited   chan struct{} // closed once the process has been waited for
	stdin    *os.File
	stdout   *os.File
	stderr   *os.File
	pending  map[string]*call // by id; under p.mu
	killed   string           // why it was killed ("": not); under p.mu
	answered atomic.Bool
	io       sync.WaitGroup
	tail     tailBuffer // stderr's last bytes: the stderr reader's, read after io
	closed   sync.Once
}

// ioGrace is how long the readers may go on after the process ended (a
// program outside its process group holding the pipes) before the pipes
// are closed under them.
const ioGrace = 2 * time.Second

// stderrLine bounds one logged stderr line; a longer one is logged in parts.
const stderrLine = 4096

// startChild starts the process for slot n in its own process group, with
// pipes for stdin, stdout and stderr.
func startChild(p *procPool, n int) (*child, error) {
	var fds [6]*os.File // child's stdin, ours; ours, child's stdout; ours, child's stderr
	for i := 0; i < 6; i += 2 {
		r, w, err := os.Pipe()
		if err != nil {
			closeFiles(fds[:i]...)
			return nil, fmt.Errorf("pipe: %w", err)
		}
		fds[i], fds[i+1] = r, w
	}
	argv := p.s.argv
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir, cmd.Env = p.s.dir, p.env
	cmd.Stdin, cmd.Stdout, cmd.Stderr = fds[0], fds[3], fds[5]
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	err := cmd.Start()
	closeFiles(fds[0], fds[3], fds[5]) // the child's ends: it has them now
	if err != nil {
		closeFiles(fds[1], fds[2], fds[4])
		if ferr := unrunnable(argv[0], err); ferr != nil {
			return nil, ferr
		}
		return nil, fmt.Errorf("start %s: %w", argv[0], err)
	}
	c := &child{p: p, cmd: cmd, pid: cmd.Process.Pid, started: time.Now(),
		in: make(chan []byte, p.s.inflight), exited: make(chan struct{}),
		stdin: fds[1], stdout: fds[2], stderr: fds[4], pending: map[string]*call{}, tail: tailBuffer{max: stderrTail}}
	c.log = p.log.With().Int("process", n).Int("pid", c.pid).Logger()
	c.log.Info().Strs("command", argv).Msg("process started")
	c.io.Add(3)
	go c.writeLoop()
	go c.readAnswers()
	go c.readStderr()
	return c, nil
}

func closeFiles(fs ...*os.File) {
	for _, f := range fs {
		_ = f.Close()
	}
}

// kill kills the process group.
func (c *child) kill() { _ = syscall.Kill(-c.pid, syscall.SIGKILL) }

// wait waits for the process to end and for its goroutines, and returns
// why it ended.
func (c *child) wait() error {
	werr := c.cmd.Wait()
	c.kill() // what it left running in its group
	close(c.exited)
	stuck := time.AfterFunc(ioGrace, c.closePipes)
	c.io.Wait()
	stuck.Stop()
	c.closePipes()
	c.p.mu.Lock()
	killed := c.killed
	c.p.mu.Unlock()
	if killed != "" {
		return errors.New(killed)
	}
	msg := fmt.Sprintf("process ended: %v", werr)
	if st := c.cmd.ProcessState; st != nil {
		msg = fmt.Sprintf("process exited with status %d", st.ExitCode())
		if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			msg = fmt.Sprintf("process killed by signal %d (%s)", ws.Signal(), ws.Signal())
		}
	}
	if tail := bytes.TrimSpace(c.tail.Bytes()); len(tail) > 0 {
		msg += ": " + strings.ToValidUTF8(string(tail), "?")
	}
	return errors.New(msg)
}

func (c *child) closePipes() {
	c.closed.Do(func() { closeFiles(c.stdin, c.stdout, c.stderr) })
}

// writeLoop writes the request lines to stdin; it closes stdin when in is
// closed (Close) or the process has ended.
func (c *child) writeLoop() {
	defer c.io.Done()
	defer func() { _ = c.stdin.Close() }()
	for {
		select {
		case line, ok := <-c.in:
			if !ok {
				return
			}
			if _, err := c.stdin.Write(line); err != nil {
				return // it ended or closed its stdin: its end fails its calls
			}
		case <-c.exited:
			return
		}
	}
}

// readAnswers reads the answer lines; a line that breaks the protocol
// kills the process (it is out of sync).
func (c *child) readAnswers() {
	defer c.io.Done()
	limit := c.p.maxOutput + answerOverhead
	sc := bufio.NewScanner(c.stdout)
	sc.Buffer(make([]byte, 0, min(64<<10, limit)), limit)
	for sc.Scan() {
		line := sc.Bytes()
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		if err := c.p.answer(c, line); err != nil {
			c.broke(err)
			return
		}
	}
	if errors.Is(sc.Err(), bufio.ErrTooLong) {
		c.broke(fmt.Errorf("it wrote a line longer than %d bytes (the step's max output of %d bytes and %d for the answer's fields)", limit, c.p.maxOutput, answerOverhead))
	}
}

// broke kills a process that broke the protocol.
func (c *child) broke(err error) {
	c.log.Error().Err(err).Msg("the process broke the protocol; restarting it (its logs belong on stderr, not stdout)")
	c.p.mu.Lock()
	c.p.killLocked(c, "process restarted: "+err.Error())
	c.p.mu.Unlock()
}

// readStderr logs stderr, line by line, with the task while the process
// holds exactly one request.
func (c *child) readStderr() {
	defer c.io.Done()
	r := bufio.NewReaderSize(c.stderr, stderrLine)
	for {
		line, err := r.ReadSlice('\n')
		if len(line) > 0 {
			_, _ = c.tail.Write(line)
			if text := strings.TrimRight(string(line), "\r\n"); text != "" {
				ev := c.log.Info().Str("stream", "stderr")
				if task := c.p.soleTask(c); task != "" {
					ev = ev.Str("task", task)
				}
				ev.Msg(text)
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

// soleTask is the task of c's only request, or "".
func (p *procPool) soleTask(c *child) string {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(c.pending) != 1 {
		return ""
	}
	for _, cl := range c.pending {
		return cl.task.ID
	}
	return ""
}

// answerLine is one line from the process: an answer (output or error) or
// a progress note.
type answerLine struct {
	ID       *string         `json:"id"`
	Output   json.RawMessage `json:"output"`
	Error    *string         `json:"error"`
	Retry    *bool           `json:"retry"`
	Progress json.RawMessage `json:"progress"`
	Message  string          `json:"message"`
}

// answer handles one line of c's stdout; an error means the line breaks
// the protocol.
func (p *procPool) answer(c *child, line []byte) error {
	var a answerLine
	if err := json.Unmarshal(line, &a); err != nil {
		return fmt.Errorf("it wrote a line that is not a JSON answer (%v): %q", err, clip(string(line), 200))
	}
	switch {
	case a.ID == nil:
		return fmt.Errorf(`it wrote a line without an "id" string: %q`, clip(string(line), 200))
	case a.Output != nil && a.Error != nil:
		return fmt.Errorf(`its answer to %q has both "output" and "error"`, *a.ID)
	case a.Output == nil && a.Error == nil && a.Progress == nil:
		return fmt.Errorf(`its line for %q has none of "output", "error" and "progress"`, *a.ID)
	}
	p.mu.Lock()
	cl := c.pending[*a.ID]
	if cl == nil {
		p.mu.Unlock()
		return fmt.Errorf("it answered id %q, which it does not hold", *a.ID)
	}
	if a.Output == nil && a.Error == nil {
		abandoned := cl.abandoned
		p.mu.Unlock()
		if !abandoned {
			p.progress(cl, a.Progress, a.Message)
		}
		return nil
	}
	delete(c.pending, *a.ID)
	if cl.timer != nil {
		cl.timer.Stop()
	}
	c.answered.Store(true)
	p.broadcastLocked()
	abandoned := cl.abandoned
	p.mu.Unlock()
	if abandoned {
		zerolog.Ctx(cl.ctx).Debug().Msg("answer of an abandoned request dropped")
		return nil
	}
	cl.done <- p.result(a)
	return nil
}

// result turns an answer into the handler's output or error.
func (p *procPool) result(a answerLine) callResult {
	if a.Error != nil {
		msg := clip(*a.Error, stderrTail)
		if msg == "" {
			msg = "the process answered an empty error"
		}
		if a.Retry != nil && !*a.Retry {
			return callResult{err: fmt.Errorf("%w: %s", SkipRetry, msg)}
		}
		return callResult{err: errors.New(msg)}
	}
	if len(a.Output) > p.maxOutput {
		return callResult{err: fmt.Errorf("output larger than %d bytes", p.maxOutput)}
	}
	return callResult{output: a.Output}
}

// progress receives a request's progress report and passes it on to the
// token's reporter (Progress; it never waits for Redis). A "progress" that
// is not a number is logged and ignored.
func (p *procPool) progress(cl *call, progress json.RawMessage, message string) {
	var v float64
	if err := json.Unmarshal(progress, &v); err != nil || string(progress) == "null" {
		zerolog.Ctx(cl.ctx).Warn().Str("progress", clip(string(progress), 100)).Msg(`progress line ignored: "progress" is not a number`)
		return
	}
	zerolog.Ctx(cl.ctx).Debug().Float64("progress", v).Str("note", message).Msg("progress")
	progressAsync(cl.ctx, v, message)
}

// clip cuts s to at most n bytes (on a character boundary), marking the cut.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}
