package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/workers"
)

func init() {
	register(&command{name: "bench", summary: "measure throughput and latency on a synthetic pipeline",
		usage: "--redis URL [--mode drain|steady|http|deployed] [--tasks N | --rate R --duration D] [--steps N] [--payload BYTES] [--concurrency N]",
		help: `Runs a synthetic pipeline of --steps echo steps (optionally a --fanout to
N parallel steps joined again) with in-process satellites against --redis,
and prints a table (or, with --json, one JSON line). Every task is checked
to have succeeded before a number is reported; lost or failed tasks make
the run an error.

  --mode drain   submits --tasks first, then times the satellites draining them
  --mode steady  submits --rate tasks per second for --duration and reports the
                 latency from submit to HAPPY_END
  --mode http    submits over HTTP to an in-process API on loopback for
                 --duration, from --clients keep-alive clients, single tasks or
                 --batch N per request (no satellites: it measures submission)
  --mode deployed  starts this binary as two child processes, "dsat serve" (on
                 a free loopback port) and "dsat worker", with a generated
                 pipeline file, submits --tasks over HTTP in batches (--batch,
                 default 500, from --clients, default 4) and times the first
                 POST to the last task's HAPPY_END; the children are stopped at
                 the end (SIGTERM, then SIGKILL). With --rate it posts single
                 tasks at --rate per second for --duration instead and reports
                 the latency from submit to HAPPY_END

The steps get the pipeline's default concurrency (autoscaled pools of 1 to 8
workers per step and satellite) and the satellite its default settings, as
deployed. --concurrency N gives every step a fixed pool of N workers instead
(and the in-process satellite reads batches of 256, as before this default
changed: "--concurrency 64" reproduces the older figures).

Without --redis it uses the embedded in-memory Redis: not representative.

Examples:
  dsat bench --redis redis://127.0.0.1:6379 --mode drain --tasks 20000 --steps 3
  dsat bench --redis redis://127.0.0.1:6379 --mode steady --rate 200 --duration 10s --json
  dsat bench --redis redis://127.0.0.1:6379 --mode deployed --tasks 20000 --steps 3 --json`,
		run: runBench})
}

type benchOpts struct {
	redis, mode, logLevel         *string
	tasks, steps, payload, fanout *int
	concurrency, rate             *int
	clients, batch                *int
	duration                      *time.Duration
	jsonOut                       *bool
	cpuProfile                    *string
	limits                        *string
	// set holds the flags given on the command line (by name).
	set map[string]bool
}

// fixedPools is the --concurrency given explicitly: fixed pools of that
// many workers per step; 0 means the pipeline's defaults (autoscaled).
func (o *benchOpts) fixedPools() int { return *o.concurrency }

func benchFlags(fs *flag.FlagSet, env *cliEnv) *benchOpts {
	return &benchOpts{
		redis:       envString(fs, env, "redis", "DSAT_REDIS_URL", "", "Redis URL (empty: embedded, not representative)"),
		mode:        fs.String("mode", "drain", "drain, steady, http or deployed"),
		tasks:       fs.Int("tasks", 20000, "tasks to drain (drain and deployed modes)"),
		steps:       fs.Int("steps", 3, "echo steps in a chain"),
		payload:     fs.Int("payload", 100, "payload size in bytes"),
		fanout:      fs.Int("fanout", 0, "fan the first step out to N parallel steps joined again (0: none)"),
		concurrency: fs.Int("concurrency", 0, "fixed pools of N workers per step (0: the pipeline's defaults, autoscaled, as deployed)"),
		clients:     fs.Int("clients", 16, "HTTP clients (http mode; deployed mode: 4 unless given)"),
		batch:       fs.Int("batch", 0, "payloads per request: 0 posts single tasks, N uses the batch endpoint (http mode; deployed mode: 500 unless given)"),
		rate:        fs.Int("rate", 200, "tasks per second (steady mode)"),
		duration:    fs.Duration("duration", 10*time.Second, "how long to submit (steady mode)"),
		jsonOut:     fs.Bool("json", false, "print one JSON line"),
		logLevel:    fs.String("log-level", "warn", "log level of the satellites"),
		cpuProfile:  fs.String("cpuprofile", "", "write a pprof CPU profile of the timed part (drain and steady modes) to this file"),
		limits:      fs.String("limits", "", `give every step these limits, a YAML mapping such as "{rate: 100000/s}" (measures the limiter's cost)`),
	}
}

// benchResult is the --json line.
type benchResult struct {
	Mode      string  `json:"mode"`
	Tasks     int     `json:"tasks"`
	Steps     int     `json:"steps"`
	Seconds   float64 `json:"seconds"`
	TasksPerS float64 `json:"tasks_per_s"`
	StepsPerS float64 `json:"steps_per_s"`
	P50       float64 `json:"p50_ms"`
	P95       float64 `json:"p95_ms"`
	P99       float64 `json:"p99_ms"`
	RedisCPU  float64 `json:"redis_cpu_s"`
	// RedisUSPerStep is Redis's CPU per task-step (µs): what bounds the
	// drain rate on one Redis.
	RedisUSPerStep float64 `json:"redis_us_per_step,omitempty"`
	Errors         int     `json:"errors"`
	Embedded       bool    `json:"embedded,omitempty"`
	SubmitPerS     float64 `json:"submit_per_s,omitempty"`
	// MemPerTask is the growth of Redis used_memory per finished task
	// (its state hash, its event stream and its share of the capped
	// firehose), measured after a drain.
	MemPerTask float64 `json:"mem_per_task_b,omitempty"`
	// TaskKeyBytes is MEMORY USAGE of one finished task's hash + events.
	TaskKeyBytes int64 `json:"task_keys_b,omitempty"`
	// PoolMax is the largest pool (workers) seen per step during the run,
	// over all satellites: the in-process satellite's own count, or in
	// deployed mode the heartbeat records (GET /v1/satellites), which are
	// written every 5 s and so may miss a short run's growth.
	PoolMax map[string]int `json:"pool_max,omitempty"`
}

func runBench(ctx context.Context, env *cliEnv, args []string) error {
	fs := newFlagSet("bench", env)
	o := benchFlags(fs, env)
	if err := parse(fs, env, "bench", args); err != nil {
		return err
	}
	o.set = map[string]bool{}
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })
	if *o.mode != "drain" && *o.mode != "steady" && *o.mode != "http" && *o.mode != "deployed" {
		return usagef("--mode %q: use drain, steady, http or deployed", *o.mode)
	}
	if *o.steps < 1 || *o.tasks < 1 || *o.payload < 2 || *o.concurrency < 0 || *o.rate < 1 || *o.fanout < 0 || *o.fanout == 1 ||
		*o.clients < 1 || *o.batch < 0 {
		return usagef("--steps, --tasks, --rate and --clients must be positive, --concurrency and --batch 0 or more, --payload at least 2, --fanout 0 or 2+")
	}
	if o.set["concurrency"] && *o.concurrency == 0 {
		return usagef("--concurrency 0: give a positive number of workers per step, or leave the flag out for the pipeline's defaults")
	}
	log, err := newLogger(env.stderr, *o.logLevel, "")
	if err != nil {
		return err
	}
	url, embedded := *o.redis, false
	if url == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return err
		}
		defer mr.Close()
		url, embedded = "redis://"+mr.Addr(), true
		fmt.Fprintln(env.stderr, "dsat bench: using the embedded in-memory Redis; the numbers are not representative (use --redis)")
	}
	rdb, err := connectRedis(ctx, url, 4*(*o.steps+*o.fanout))
	if err != nil {
		return err
	}
	defer rdb.Close()
	yaml := benchYAML(*o.steps, *o.fanout, o.fixedPools(), *o.limits)
	p, err := dsat.ParsePipeline("bench.yaml", []byte(yaml))
	if err != nil {
		return err
	}
	c, err := dsat.NewClient(rdb, dsat.Config{Prefix: "dsatbench"}, p)
	if err != nil {
		return err
	}
	b := &bench{c: c, rdb: rdb, p: p, o: o, log: log, payload: benchPayload(*o.payload), yaml: yaml, url: url, env: env}
	defer b.cleanup()
	var res benchResult
	switch *o.mode {
	case "drain":
		res, err = b.drain(ctx)
	case "steady":
		res, err = b.steady(ctx)
	case "deployed":
		res, err = b.deployed(ctx)
	default:
		res, err = b.http(ctx)
	}
	if err != nil {
		return err
	}
	res.Embedded = embedded
	if *o.jsonOut {
		line, _ := json.Marshal(res)
		fmt.Fprintln(env.stdout, string(line))
	} else {
		printBench(env, res)
	}
	if res.Errors > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%d tasks did not succeed: the numbers above are not valid", res.Errors)}
	}
	return nil
}

// benchYAML is the synthetic pipeline: conc > 0 gives every step a fixed
// pool of conc workers, 0 leaves the pipeline's default concurrency;
// limits, when not empty, is every step's limits: mapping.
func benchYAML(steps, fanout, conc int, limits string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: bench%d\nversion: 1.0.0\nsteps:\n", rand.IntN(1e9))
	step := func(name, extra string) {
		if conc > 0 {
			extra = fmt.Sprintf(", concurrency: {min: %d, max: %d}", conc, conc) + extra
		}
		if limits != "" {
			extra += ", limits: " + limits
		}
		fmt.Fprintf(&b, "  %s: {handler: echo%s}\n", name, extra)
	}
	for i := 1; i <= steps; i++ {
		next := ""
		switch {
		case i == 1 && fanout > 0:
			var fs []string
			for j := 1; j <= fanout; j++ {
				fs = append(fs, fmt.Sprintf("f%d", j))
			}
			next = ", next: [" + strings.Join(fs, ", ") + "]"
		case i < steps:
			next = fmt.Sprintf(", next: [s%d]", i+1)
		}
		if i == 2 && fanout > 0 {
			next += ", join: true"
		}
		step(fmt.Sprintf("s%d", i), next)
	}
	for j := 1; j <= fanout; j++ {
		next := ", next: [s2]"
		if steps < 2 {
			next = ""
		}
		step(fmt.Sprintf("f%d", j), next)
	}
	return b.String()
}

func benchPayload(n int) []byte {
	return []byte(`"` + strings.Repeat("x", n-2) + `"`)
}

type bench struct {
	c       *dsat.Client
	rdb     redis.UniversalClient
	p       *dsat.Pipeline
	o       *benchOpts
	log     zerolog.Logger
	payload []byte
	ids     []string
	yaml    string // the pipeline file (deployed mode writes it for the children)
	url     string // the Redis URL
	env     *cliEnv
	poolMax map[string]int
}

// endStep is the step that ends every task (the one with no next step).
func (b *bench) endStep() string {
	for _, s := range b.p.Order {
		if len(b.p.Steps[s].Targets()) == 0 {
			return s
		}
	}
	return b.p.Order[len(b.p.Order)-1]
}

// taskSteps is the number of handler runs per task.
func (b *bench) taskSteps() int { return len(b.p.Order) }

// satellite starts the in-process satellite: with the settings of "dsat
// worker" (workers.Config defaults), or, with --concurrency, the read batch
// of 256 and 1 s block the fixed-pool figures were measured with.
func (b *bench) satellite(ctx context.Context) (*workers.Satellite, error) {
	mux := builtinMux(0)
	cfg := workers.Config{ID: "bench", Logger: b.log}
	if b.o.fixedPools() > 0 {
		cfg.Block, cfg.ReadBatch = time.Second, 256
	}
	s, err := workers.New(b.c, mux, cfg)
	if err != nil {
		return nil, err
	}
	return s, s.Start(ctx)
}

func redisCPU(ctx context.Context, rdb redis.UniversalClient) float64 {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}

func (b *bench) submitAll(ctx context.Context, n int) error {
	payloads := make([][]byte, 0, 1000)
	for len(b.ids) < n {
		payloads = payloads[:0]
		for i := 0; i < min(1000, n-len(b.ids)); i++ {
			payloads = append(payloads, b.payload)
		}
		ids, err := b.c.SubmitBatch(ctx, b.p.Name, payloads)
		if err != nil {
			return err
		}
		b.ids = append(b.ids, ids...)
	}
	return nil
}

func usedMemory(ctx context.Context, rdb redis.UniversalClient) float64 {
	info, _ := rdb.Info(ctx, "memory").Result()
	for _, line := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "used_memory:"); ok {
			f, _ := strconv.ParseFloat(v, 64)
			return f
		}
	}
	return 0
}

func (b *bench) drain(ctx context.Context) (benchResult, error) {
	mem0 := usedMemory(ctx, b.rdb)
	t0 := time.Now()
	if err := b.submitAll(ctx, *b.o.tasks); err != nil {
		return benchResult{}, err
	}
	submitRate := float64(len(b.ids)) / time.Since(t0).Seconds()
	cpu0 := redisCPU(ctx, b.rdb)
	stopProfile, err := b.startProfile()
	if err != nil {
		return benchResult{}, err
	}
	start := time.Now()
	s, err := b.satellite(ctx)
	if err != nil {
		stopProfile()
		return benchResult{}, err
	}
	defer s.Stop(context.Background())
	last := b.endStep()
	err = b.waitProcessed(ctx, s, last, int64(len(b.ids)))
	stopProfile()
	if err != nil {
		return benchResult{}, err
	}
	secs := time.Since(start).Seconds()
	cpu := redisCPU(ctx, b.rdb) - cpu0
	res, err := b.verify(ctx)
	res.Mode, res.Seconds, res.RedisCPU, res.SubmitPerS = "drain", secs, cpu, submitRate
	res.TasksPerS = float64(res.Tasks) / secs
	res.PoolMax = b.poolMax
	s.Stop(context.Background()) // idle satellites hold no memory worth measuring
	res.MemPerTask = (usedMemory(ctx, b.rdb) - mem0) / float64(len(b.ids))
	res.TaskKeyBytes, _ = b.c.TaskMemory(ctx, b.ids[0])
	res.StepsPerS = res.TasksPerS * float64(b.taskSteps())
	if steps := res.Tasks * b.taskSteps(); steps > 0 {
		res.RedisUSPerStep = res.RedisCPU * 1e6 / float64(steps)
	}
	return res, err
}

// startProfile starts the --cpuprofile CPU profile, if asked for; the
// returned function stops it (once; later calls do nothing).
func (b *bench) startProfile() (func(), error) {
	if *b.o.cpuProfile == "" {
		return func() {}, nil
	}
	f, err := os.Create(*b.o.cpuProfile)
	if err != nil {
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			pprof.StopCPUProfile()
			f.Close()
		})
	}, nil
}

func (b *bench) steady(ctx context.Context) (benchResult, error) {
	s, err := b.satellite(ctx)
	if err != nil {
		return benchResult{}, err
	}
	defer s.Stop(context.Background())
	time.Sleep(200 * time.Millisecond) // readers blocked and ready
	cpu0 := redisCPU(ctx, b.rdb)
	stopProfile, err := b.startProfile()
	if err != nil {
		return benchResult{}, err
	}
	defer stopProfile()
	interval := time.Second / time.Duration(*b.o.rate)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	start := time.Now()
	for time.Since(start) < *b.o.duration {
		select {
		case <-ctx.Done():
			return benchResult{}, ctx.Err()
		case <-tick.C:
		}
		sub, err := b.c.Submit(ctx, b.p.Name, b.payload, dsat.SubmitOptions{})
		if err != nil {
			return benchResult{}, err
		}
		b.ids = append(b.ids, sub.ID)
	}
	last := b.endStep()
	if err := b.waitProcessed(ctx, s, last, int64(len(b.ids))); err != nil {
		return benchResult{}, err
	}
	stopProfile()
	secs := time.Since(start).Seconds()
	cpu := redisCPU(ctx, b.rdb) - cpu0
	res, err := b.verify(ctx)
	res.Mode, res.Seconds, res.RedisCPU, res.PoolMax = "steady", secs, cpu, b.poolMax
	res.TasksPerS = float64(res.Tasks) / secs
	res.StepsPerS = res.TasksPerS * float64(b.taskSteps())
	if steps := res.Tasks * b.taskSteps(); steps > 0 {
		res.RedisUSPerStep = res.RedisCPU * 1e6 / float64(steps)
	}
	return res, err
}

// waitProcessed waits until the last step has run n times (or stalls).
func (b *bench) waitProcessed(ctx context.Context, s *workers.Satellite, last string, n int64) error {
	key := b.p.Name + "/" + last
	prev, stalled := int64(-1), time.Now()
	for {
		info := s.Info()
		b.notePools(info)
		got := info.Steps[key].Processed
		if got >= n {
			return nil
		}
		if got != prev {
			prev, stalled = got, time.Now()
		} else if time.Since(stalled) > 30*time.Second {
			return fmt.Errorf("no progress for 30s: %d of %d tasks finished", got, n)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// notePools records the largest pool seen per step of the bench pipeline
// in a satellite record.
func (b *bench) notePools(infos ...dsat.SatelliteInfo) {
	if b.poolMax == nil {
		b.poolMax = map[string]int{}
	}
	sum := map[string]int{}
	for _, info := range infos {
		for k, l := range info.Steps {
			if step, ok := strings.CutPrefix(k, b.p.Name+"/"); ok {
				sum[step] += l.Concurrency
			}
		}
	}
	for step, n := range sum {
		b.poolMax[step] = max(b.poolMax[step], n)
	}
}

// verify reads every task's status and latency (created -> last event).
func (b *bench) verify(ctx context.Context) (benchResult, error) {
	res := benchResult{Tasks: len(b.ids), Steps: b.taskSteps()}
	lat := make([]float64, 0, len(b.ids))
	briefs, err := b.c.Briefs(ctx, b.ids)
	if err != nil {
		return res, err
	}
	for _, t := range briefs {
		if t.Status != dsat.StatusSucceeded {
			res.Errors++
			continue
		}
		lat = append(lat, float64(t.UpdatedAt.Sub(t.CreatedAt.Time).Milliseconds()))
	}
	sort.Float64s(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	res.P50, res.P95, res.P99 = pct(0.50), pct(0.95), pct(0.99)
	return res, nil
}

// cleanup deletes the bench pipeline's keys.
func (b *bench) cleanup() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, _ = b.c.Purge(ctx, b.p.Name)
	b.rdb.Del(ctx, b.c.Keys().Satellite("bench"))
}

func printBench(env *cliEnv, r benchResult) {
	w := env.stdout
	fmt.Fprintf(w, "mode            %s\n", r.Mode)
	fmt.Fprintf(w, "tasks           %d (%d steps each)\n", r.Tasks, r.Steps)
	fmt.Fprintf(w, "seconds         %.2f\n", r.Seconds)
	fmt.Fprintf(w, "tasks/s         %.0f\n", r.TasksPerS)
	fmt.Fprintf(w, "task-steps/s    %.0f\n", r.StepsPerS)
	fmt.Fprintf(w, "latency ms      p50 %.1f  p95 %.1f  p99 %.1f  (submit to HAPPY_END)\n", r.P50, r.P95, r.P99)
	fmt.Fprintf(w, "redis cpu s     %.2f (%.1f µs per task-step)\n", r.RedisCPU, r.RedisUSPerStep)
	if r.SubmitPerS > 0 && r.Mode == "deployed" {
		fmt.Fprintf(w, "submit/s        %.0f (HTTP batches, while the satellite ran)\n", r.SubmitPerS)
	} else if r.SubmitPerS > 0 {
		fmt.Fprintf(w, "submit/s        %.0f (batches of 1000, before the drain)\n", r.SubmitPerS)
	}
	if r.MemPerTask > 0 {
		fmt.Fprintf(w, "redis bytes     %.0f per finished task (used_memory growth); one task's hash + events: %d\n", r.MemPerTask, r.TaskKeyBytes)
	}
	if len(r.PoolMax) > 0 {
		var parts []string
		for _, s := range sortedKeys(r.PoolMax) {
			parts = append(parts, fmt.Sprintf("%s %d", s, r.PoolMax[s]))
		}
		fmt.Fprintf(w, "largest pools   %s\n", strings.Join(parts, ", "))
	}
	fmt.Fprintf(w, "errors          %d\n", r.Errors)
}
