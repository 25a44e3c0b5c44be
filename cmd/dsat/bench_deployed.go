package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// benchChild is a child process of the deployed mode ("dsat serve" or
// "dsat worker"): its stderr is forwarded line by line to the bench's
// stderr and the last lines are kept for error messages.
type benchChild struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done is closed

	mu   sync.Mutex
	tail []string
}

// startChild starts this binary with args, in its own process group (a
// ctrl-C at the terminal reaches only the bench, which stops the children
// itself) and, on Linux, with a parent-death signal so that the children
// do not outlive a bench that was killed.
func (b *bench) startChild(exe, name string, args ...string) (*benchChild, error) {
	cmd := exec.Command(exe, append([]string{name}, args...)...)
	// DSAT_* variables (an API token, a step filter, ...) would change
	// what is measured: every setting is given by flag instead.
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DSAT_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.SysProcAttr = childSysProcAttr()
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(b.env.stderr, "dsat bench: starting %s\n", shellQuote(cmd.Args))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start dsat %s: %w", name, err)
	}
	ch := &benchChild{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintf(b.env.stderr, "dsat %s: %s\n", name, line)
			ch.mu.Lock()
			ch.tail = append(ch.tail, line)
			if len(ch.tail) > 10 {
				ch.tail = ch.tail[1:]
			}
			ch.mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, stderr)
		ch.err = cmd.Wait()
		close(ch.done)
	}()
	return ch, nil
}

// exited returns an error if the child has exited.
func (ch *benchChild) exited() error {
	select {
	case <-ch.done:
		ch.mu.Lock()
		defer ch.mu.Unlock()
		return fmt.Errorf("dsat %s exited early (%v): %s", ch.name, ch.err, strings.Join(ch.tail, " | "))
	default:
		return nil
	}
}

// stop sends SIGTERM and waits up to grace for a clean exit, then kills
// the child's whole process group.
func (ch *benchChild) stop(grace time.Duration) {
	select {
	case <-ch.done:
		return
	default:
	}
	_ = ch.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-ch.done:
		return
	case <-time.After(grace):
	}
	_ = syscall.Kill(-ch.cmd.Process.Pid, syscall.SIGKILL)
	_ = ch.cmd.Process.Kill()
	<-ch.done
}

// shellQuote prints a command line that can be pasted into a shell.
func shellQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a != "" && strings.Trim(a, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=,@%+") == "" {
			out[i] = a
		} else {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
	}
	return strings.Join(out, " ")
}

// freeLoopbackAddr picks a free TCP port on 127.0.0.1.
func freeLoopbackAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	addr := l.Addr().String()
	l.Close()
	return addr, nil
}

// waitHTTP200 polls url until it answers 200, a child exits or limit passes.
func waitHTTP200(ctx context.Context, hc *http.Client, url string, limit time.Duration, children ...*benchChild) error {
	deadline := time.Now().Add(limit)
	for {
		for _, ch := range children {
			if err := ch.exited(); err != nil {
				return err
			}
		}
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		if res, err := hc.Do(req); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer 200 within %s", url, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// deployed runs the pipeline as it is deployed: "dsat serve" and "dsat
// worker" as child processes of this binary, tasks submitted over HTTP in
// batches, timed from the first POST to the last task's HAPPY_END (the
// task hash's "updated", stamped by the worker's clock on this machine).
func (b *bench) deployed(ctx context.Context) (benchResult, error) {
	d, stop, err := b.startDeployment(ctx)
	if err != nil {
		return benchResult{}, err
	}
	defer stop()
	cpu0 := redisCPU(ctx, b.rdb)
	stopProfile, err := b.startProfile()
	if err != nil {
		return benchResult{}, err
	}
	defer stopProfile()
	t0 := time.Now()
	sub := b.submitOverHTTP(ctx, d, t0)
	defer sub.stop()
	var sats satSamples
	cpu1, lastMS, err := b.waitForEnd(ctx, d, sub, &sats)
	if err != nil {
		return benchResult{}, err
	}
	stopProfile()
	b.sampleSatellites(ctx, d.hc, d.api, &sats)
	secs := (lastMS - float64(t0.UnixNano())/1e6) / 1000
	if secs <= 0 {
		secs = time.Since(t0).Seconds()
	}
	res, err := b.verify(ctx)
	res.Mode, res.Seconds, res.RedisCPU = "deployed", secs, cpu1-cpu0
	res.TasksPerS = float64(res.Tasks) / secs
	res.StepsPerS = res.TasksPerS * float64(b.taskSteps())
	res.SubmitPerS = float64(len(b.ids)) / time.Duration(sub.took.Load()).Seconds()
	if steps := res.Tasks * b.taskSteps(); steps > 0 {
		res.RedisUSPerStep = res.RedisCPU * 1e6 / float64(steps)
	}
	res.PoolMax = b.poolMax
	fmt.Fprintf(b.env.stderr, "dsat bench: GET /v1/satellites: %d samples over %.1fs, %d of them with a record of the worker, %d distinct heartbeats; largest pools %v\n",
		sats.samples, time.Since(t0).Seconds(), sats.withWorker, len(sats.beats), b.poolMax)
	return res, err
}

// deployment is a running "dsat serve" and "dsat worker" pair.
type deployment struct {
	serve, worker *benchChild
	api           string
	hc            *http.Client
}

// startDeployment writes the bench pipeline to a temporary folder, starts
// "dsat serve" and "dsat worker" on free loopback ports and waits until
// both are ready. stop stops them and removes what was made.
func (b *bench) startDeployment(ctx context.Context) (d *deployment, stop func(), err error) {
	// The clean-up and the deployment are locals: every "return nil, nil,
	// err" sets the named results to nil before the deferred clean-up runs.
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
	}
	defer func() {
		if err != nil {
			cleanup()
		}
	}()
	exe, err := os.Executable()
	if err != nil {
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "dsat-bench-")
	if err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { os.RemoveAll(dir) })
	if err := os.WriteFile(filepath.Join(dir, "bench.yaml"), []byte(b.yaml), 0o644); err != nil {
		return nil, nil, err
	}
	apiAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, nil, err
	}
	workerAddr, err := freeLoopbackAddr()
	if err != nil {
		return nil, nil, err
	}
	satID := fmt.Sprintf("bench-%d", os.Getpid())
	common := []string{"--redis", b.url, "--pipelines", dir, "--prefix", "dsatbench", "--log-level", *b.o.logLevel, "--log-format", "json"}
	const grace = 15 * time.Second
	dep := &deployment{api: "http://" + apiAddr}
	if dep.serve, err = b.startChild(exe, "serve", append(common, "--addr", apiAddr, "--token=")...); err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() { dep.serve.stop(grace) })
	if dep.worker, err = b.startChild(exe, "worker", append(common, "--addr", workerAddr, "--id", satID, "--steps=", "--shutdown-timeout", "5s")...); err != nil {
		return nil, nil, err
	}
	undo = append(undo, func() {
		dep.worker.stop(grace)
		b.rdb.Del(context.Background(), b.c.Keys().Satellite(satID)) // gone already after a clean stop
	})
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	undo = append(undo, tr.CloseIdleConnections)
	dep.hc = &http.Client{Transport: tr, Timeout: 60 * time.Second}
	if err := waitHTTP200(ctx, dep.hc, dep.api+"/readyz", 30*time.Second, dep.serve, dep.worker); err != nil {
		return nil, nil, err
	}
	if err := waitHTTP200(ctx, dep.hc, "http://"+workerAddr+"/readyz", 30*time.Second, dep.serve, dep.worker); err != nil {
		return nil, nil, err
	}
	return dep, cleanup, nil
}

// submission is the POSTs of a deployed run, in flight.
type submission struct {
	done   chan struct{} // closed once every POST returned
	took   atomic.Int64  // ns from the first POST to the last answer
	cancel context.CancelFunc
	mu     sync.Mutex
	err    error      // the first failed POST
	ids    [][]string // ids per POST
}

// stop cancels what is left and waits for it.
func (s *submission) stop() { s.cancel(); <-s.done }

func (s *submission) failure() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// submitOverHTTP submits the run's tasks: --tasks in batches from
// --clients (4 × 500 by default), or, with --rate, single POSTs at that
// rate for --duration.
func (b *bench) submitOverHTTP(ctx context.Context, d *deployment, t0 time.Time) *submission {
	clients, per := 4, 500
	if b.o.set["clients"] {
		clients = *b.o.clients
	}
	if b.o.set["batch"] {
		per = *b.o.batch
	}
	n := *b.o.tasks
	paced := b.o.set["rate"] // latency: single POSTs at --rate for --duration
	if paced {
		per, n = 0, max(1, int(float64(*b.o.rate)*b.o.duration.Seconds()))
	}
	url, batched := d.api+"/v1/pipelines/"+b.p.Name+"/batch", per > 0
	if !batched {
		url, per = d.api+"/v1/pipelines/"+b.p.Name+"/tasks", 1
	}
	body := func(k int) []byte {
		if !batched {
			return b.payload
		}
		items := make([]string, k)
		for i := range items {
			items[i] = string(b.payload)
		}
		return []byte("[" + strings.Join(items, ",") + "]")
	}
	full := body(per)
	chunks := (n + per - 1) / per
	sub := &submission{done: make(chan struct{}), ids: make([][]string, chunks)}
	sctx, cancel := context.WithCancel(ctx)
	sub.cancel = cancel
	post := func(k int) error {
		cnt := min(per, n-k*per)
		payload := full
		if cnt != per {
			payload = body(cnt)
		}
		req, _ := http.NewRequestWithContext(sctx, "POST", url, bytes.NewReader(payload))
		req.Header.Set("Content-Type", "application/json")
		res, err := d.hc.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		raw, _ := io.ReadAll(res.Body)
		if res.StatusCode != http.StatusAccepted {
			return fmt.Errorf("POST %s: HTTP %d: %s", url, res.StatusCode, strings.TrimSpace(string(raw)))
		}
		if !batched {
			var one struct{ ID string }
			if err := json.Unmarshal(raw, &one); err != nil || one.ID == "" {
				return fmt.Errorf("POST %s: unexpected answer %s", url, raw)
			}
			sub.ids[k] = []string{one.ID}
			return nil
		}
		var many struct{ IDs []string }
		if err := json.Unmarshal(raw, &many); err != nil || len(many.IDs) != cnt {
			return fmt.Errorf("POST %s: unexpected answer (%d ids for %d payloads): %.200s", url, len(many.IDs), cnt, raw)
		}
		sub.ids[k] = many.IDs
		return nil
	}
	// postOrStop posts chunk k; the first failure is kept and stops every
	// submitter.
	postOrStop := func(k int) bool {
		err := post(k)
		if err != nil {
			sub.mu.Lock()
			if sub.err == nil {
				sub.err = err
			}
			sub.mu.Unlock()
			cancel()
		}
		return err == nil
	}
	var wg sync.WaitGroup
	if paced {
		wg.Add(1)
		go func() {
			defer wg.Done()
			every := time.Second / time.Duration(*b.o.rate)
			for k := 0; k < chunks && sctx.Err() == nil; k++ {
				if d := time.Until(t0.Add(time.Duration(k) * every)); d > 0 {
					time.Sleep(d)
				}
				wg.Add(1)
				go func(k int) {
					defer wg.Done()
					postOrStop(k)
				}(k)
			}
		}()
		clients = 0
	}
	var next atomic.Int64
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for sctx.Err() == nil {
				k := int(next.Add(1) - 1)
				if k >= chunks || !postOrStop(k) {
					return
				}
			}
		}()
	}
	go func() {
		wg.Wait()
		sub.took.Store(int64(time.Since(t0)))
		close(sub.done)
	}()
	return sub
}

// waitForEnd waits until every task of the run is final: cheap polls of
// the step streams (backlog and pending per step) once every POST has
// returned; when they are all empty, a scan of the task statuses confirms
// it. GET /v1/satellites is sampled meanwhile for the pools' sizes. It
// returns Redis's CPU then and the time of the last task's end (ms).
func (b *bench) waitForEnd(ctx context.Context, d *deployment, sub *submission, sats *satSamples) (cpu1, lastMS float64, err error) {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	lastSat := time.Time{}
	progress, lastState := time.Now(), ""
	var nextScan time.Time
	for {
		select {
		case <-ctx.Done():
			return 0, 0, ctx.Err()
		case <-tick.C:
		}
		for _, ch := range []*benchChild{d.serve, d.worker} {
			if err := ch.exited(); err != nil {
				return 0, 0, err
			}
		}
		if time.Since(lastSat) >= 500*time.Millisecond {
			lastSat = time.Now()
			b.sampleSatellites(ctx, d.hc, d.api, sats)
		}
		select {
		case <-sub.done:
		default:
			continue
		}
		if err := sub.failure(); err != nil {
			return 0, 0, fmt.Errorf("submitting: %w", err)
		}
		loads, err := b.c.StepLoads(ctx, b.p)
		if err != nil {
			return 0, 0, err
		}
		var outstanding int64
		for _, l := range loads {
			outstanding += l.Backlog + l.Pending
		}
		unfinished := -1
		if outstanding == 0 && time.Now().After(nextScan) {
			cpu1 = redisCPU(ctx, b.rdb)
			if len(b.ids) == 0 {
				for _, c := range sub.ids {
					b.ids = append(b.ids, c...)
				}
			}
			if unfinished, lastMS, err = b.scanStatuses(ctx); err != nil {
				return 0, 0, err
			}
			// Tasks waiting for a retry are in no stream: keep waiting,
			// and scan again later (a scan reads every task).
			if unfinished == 0 {
				return cpu1, lastMS, nil
			}
			nextScan = time.Now().Add(250 * time.Millisecond)
		}
		if outstanding > 0 || unfinished >= 0 { // a tick without a scan tells nothing new
			if state := fmt.Sprint(outstanding, unfinished); state != lastState {
				lastState, progress = state, time.Now()
			}
		}
		if time.Since(progress) > 30*time.Second {
			return 0, 0, fmt.Errorf("no progress for 30s: %d tokens in the step streams, %d tasks unfinished", outstanding, unfinished)
		}
	}
}

// satSamples counts what GET /v1/satellites showed during a deployed run.
type satSamples struct {
	samples, withWorker int
	beats               map[string]bool // distinct last_seen values
}

func (b *bench) sampleSatellites(ctx context.Context, hc *http.Client, api string, s *satSamples) {
	req, _ := http.NewRequestWithContext(ctx, "GET", api+"/v1/satellites", nil)
	res, err := hc.Do(req)
	if err != nil {
		return
	}
	defer res.Body.Close()
	var sats []dsat.SatelliteInfo
	if res.StatusCode != http.StatusOK || json.NewDecoder(res.Body).Decode(&sats) != nil {
		return
	}
	s.samples++
	if s.beats == nil {
		s.beats = map[string]bool{}
	}
	var ours []dsat.SatelliteInfo
	for _, sat := range sats {
		for k := range sat.Steps {
			if strings.HasPrefix(k, b.p.Name+"/") {
				ours = append(ours, sat)
				s.beats[sat.ID+"@"+sat.LastSeen.Time.String()] = true
				break
			}
		}
	}
	if len(ours) > 0 {
		s.withWorker++
	}
	b.notePools(ours...)
}

// scanStatuses reads every task's status: how many are not finished yet
// (pending or running: in a stream or waiting for a retry), and the
// largest "updated" (ms) of the finished ones, the time of the last end.
func (b *bench) scanStatuses(ctx context.Context) (unfinished int, lastMS float64, err error) {
	briefs, err := b.c.Briefs(ctx, b.ids)
	if err != nil {
		return 0, 0, err
	}
	for _, t := range briefs {
		if dsat.Final(t.Status) {
			lastMS = max(lastMS, float64(t.UpdatedAt.UnixMilli()))
		} else {
			unfinished++
		}
	}
	return unfinished, lastMS, nil
}

// sortedKeys is used to print maps in a stable order.
func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
