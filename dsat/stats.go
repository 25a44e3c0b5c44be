package dsat

import (
	"context"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Step statistics (GET /v1/pipelines/{name}/stats): each satellite counts,
// per step, the tokens its handlers ended, the failed attempts, the tokens
// that died, and two latency histograms (handler run time, time in queue),
// and adds them every few seconds to one hash per pipeline and time bucket
// (RecordStats: one pipelined write, HINCRBY per field). Nothing is added
// to the scripts: the hot path pays a few atomic adds in the satellite.
// Stats reads the buckets of a window back, merges them and computes the
// percentiles from the histograms.

// Stats timing.
const (
	// StatsBucket is the width of one stats bucket.
	StatsBucket = 10 * time.Second
	// StatsMaxWindow is the longest window Stats reads (and about how long
	// a bucket is kept: StatsMaxWindow after its end, plus a minute).
	StatsMaxWindow = 15 * time.Minute
)

// LatencyBins is the number of bins of a latency histogram: four per
// power of two of microseconds, from 1 µs to about 12 days (the last bin
// takes anything longer).
const LatencyBins = 160

// LatencyBin returns the histogram bin of a duration: bins 0..3 hold 0..3
// µs, then each power of two [2^e, 2^(e+1)) µs is split into four equal
// bins, so a bin is at most a quarter of its lower bound wide (a
// percentile read from a bin is off by at most about 11 %).
func LatencyBin(d time.Duration) int {
	us := d.Microseconds()
	if us < 4 {
		return int(max(us, 0))
	}
	e := bits.Len64(uint64(us)) - 1 // 2^e <= us < 2^(e+1), e >= 2
	b := 4*(e-1) + int((us>>(e-2))&3)
	return min(b, LatencyBins-1)
}

// latencyBounds returns a bin's bounds in microseconds: [lo, hi).
func latencyBounds(b int) (lo, hi float64) {
	if b < 4 {
		return float64(b), float64(b + 1)
	}
	e, sub := b/4+1, b%4
	lo = float64(int64(4+sub) << (e - 2))
	return lo, lo + float64(int64(1)<<(e-2))
}

// LatencyHistogram counts durations by LatencyBin.
type LatencyHistogram [LatencyBins]int64

// Add counts one duration.
func (h *LatencyHistogram) Add(d time.Duration) { h[LatencyBin(d)]++ }

// Count returns how many durations the histogram holds.
func (h *LatencyHistogram) Count() int64 {
	var n int64
	for _, c := range h {
		n += c
	}
	return n
}

// Quantile returns the q-quantile (0 < q ≤ 1) in milliseconds,
// interpolated linearly inside its bin, and false for an empty histogram.
func (h *LatencyHistogram) Quantile(q float64) (float64, bool) {
	n := h.Count()
	if n == 0 {
		return 0, false
	}
	rank := q * float64(n)
	var cum float64
	for b, c := range h {
		if c == 0 {
			continue
		}
		if cum+float64(c) >= rank {
			lo, hi := latencyBounds(b)
			f := max(0, min(1, (rank-cum)/float64(c)))
			return math.Round(lo+f*(hi-lo)) / 1000, true
		}
		cum += float64(c)
	}
	lo, hi := latencyBounds(LatencyBins - 1)
	return (lo + hi) / 2 / 1000, true
}

// StepSample is what one satellite saw of one step since its last flush.
type StepSample struct {
	Pipeline, Step string
	// Ended counts tokens whose handler returned an output (END).
	Ended int64
	// Failed counts failed attempts: errors, timeouts, panics and queue
	// timeouts (not cancellations or snoozes).
	Failed int64
	// Dead counts tokens that went to the dead letters (attempts
	// exhausted, SkipRetry, a queue timeout on the last attempt).
	Dead int64
	// Run is the handler run time of every attempt that ran to an outcome;
	// Wait is each such attempt's time in queue (from when its token was
	// sent to the step to its handler's start).
	Run, Wait LatencyHistogram
}

// Empty reports whether the sample holds nothing.
func (s *StepSample) Empty() bool {
	return s.Ended == 0 && s.Failed == 0 && s.Dead == 0 && s.Run.Count() == 0 && s.Wait.Count() == 0
}

// Stats hash fields: "<step>:n" ended, "<step>:f" failed attempts,
// "<step>:d" dead tokens, "<step>:r<bin>" run time and "<step>:w<bin>"
// time in queue, by LatencyBin.
const (
	statEnded  = "n"
	statFailed = "f"
	statDead   = "d"
	statRun    = 'r'
	statWait   = 'w'
)

// statsTTL is how long a bucket is kept after its end.
const statsTTL = StatsMaxWindow + time.Minute

// bucketStart returns the start of the bucket holding t.
func bucketStart(t time.Time) time.Time { return t.Truncate(StatsBucket) }

// RecordStats adds samples to the bucket holding at: one pipelined write
// (HINCRBY per non-zero field, and the bucket's expiry), whatever the
// number of pipelines and steps. Empty samples are skipped.
func (c *Client) RecordStats(ctx context.Context, at time.Time, samples []StepSample) error {
	start := bucketStart(at)
	// A relative expiry: the satellite's clock may differ from Redis's.
	ttl := max(start.Add(StatsBucket+statsTTL).Sub(c.cfg.Now()), time.Second)
	pipe := c.rdb.Pipeline()
	keys := map[string]bool{}
	for i := range samples {
		s := &samples[i]
		if s.Empty() {
			continue
		}
		key := c.keys.Stats(s.Pipeline, start.Unix())
		keys[key] = true
		for f, v := range map[string]int64{statEnded: s.Ended, statFailed: s.Failed, statDead: s.Dead} {
			if v != 0 {
				pipe.HIncrBy(ctx, key, s.Step+":"+f, v)
			}
		}
		for kind, h := range map[byte]*LatencyHistogram{statRun: &s.Run, statWait: &s.Wait} {
			for b, v := range h {
				if v != 0 {
					pipe.HIncrBy(ctx, key, s.Step+":"+string(kind)+strconv.Itoa(b), v)
				}
			}
		}
	}
	if len(keys) == 0 {
		return nil
	}
	for key := range keys {
		pipe.PExpire(ctx, key, ttl)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("dsat: record stats: %w", err)
	}
	return nil
}

// StepTotals are a step's figures over some time: counts, and latency
// percentiles in milliseconds (nil when no attempt ran).
type StepTotals struct {
	Ended     int64    `json:"ended"`
	Failed    int64    `json:"failed"`
	Dead      int64    `json:"dead"`
	RunP50MS  *float64 `json:"run_p50_ms"`
	RunP95MS  *float64 `json:"run_p95_ms"`
	WaitP50MS *float64 `json:"wait_p50_ms"`
	WaitP95MS *float64 `json:"wait_p95_ms"`
}

// StepSeries is a step's figures per bucket (aligned with
// PipelineStats.Times) and over the whole window.
type StepSeries struct {
	Ended     []int64    `json:"ended"`
	Failed    []int64    `json:"failed"`
	Dead      []int64    `json:"dead"`
	RunP50MS  []*float64 `json:"run_p50_ms"`
	RunP95MS  []*float64 `json:"run_p95_ms"`
	WaitP50MS []*float64 `json:"wait_p50_ms"`
	WaitP95MS []*float64 `json:"wait_p95_ms"`
	Totals    StepTotals `json:"totals"`
}

// PipelineStats is the answer of Stats: per step, one value per bucket of
// the window, oldest first; the last bucket is the current one (partial).
type PipelineStats struct {
	Pipeline      string                 `json:"pipeline"`
	Window        string                 `json:"window"`
	BucketSeconds int                    `json:"bucket_seconds"`
	Times         []Time                 `json:"times"`
	Steps         map[string]*StepSeries `json:"steps"`
}

// ParseStatsWindow reads a stats window: a Go duration from StatsBucket to
// StatsMaxWindow ("" is StatsMaxWindow), rounded up to whole buckets.
func ParseStatsWindow(v string) (time.Duration, error) {
	if v == "" {
		return StatsMaxWindow, nil
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < StatsBucket || d > StatsMaxWindow {
		return 0, fmt.Errorf("%w: %q: want a Go duration from %s to %s, such as 5m", ErrInvalidWindow, v, StatsBucket, StatsMaxWindow)
	}
	if r := d % StatsBucket; r != 0 {
		d += StatsBucket - r
	}
	return d, nil
}

// Stats reads the named pipeline's step statistics over the window (at
// most StatsMaxWindow; 0 for StatsMaxWindow) ending now: one pipelined read of the window's
// buckets, all in the pipeline's stats slot. Every step of the loaded
// pipeline is in the answer, with zeros where nothing was recorded; steps
// of every version of the pipeline are merged by name.
func (c *Client) Stats(ctx context.Context, name string, window time.Duration) (*PipelineStats, error) {
	p, err := c.Pipeline(name)
	if err != nil {
		return nil, err
	}
	if window <= 0 {
		window = StatsMaxWindow
	}
	window = min(max(window, StatsBucket), StatsMaxWindow)
	n := int(window / StatsBucket)
	last := bucketStart(c.cfg.Now())
	first := last.Add(-time.Duration(n-1) * StatsBucket)
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, n)
	out := &PipelineStats{Pipeline: name, Window: window.String(), BucketSeconds: int(StatsBucket / time.Second),
		Times: make([]Time, n), Steps: map[string]*StepSeries{}}
	for i := range n {
		t := first.Add(time.Duration(i) * StatsBucket)
		out.Times[i] = Time{Time: t.UTC()}
		cmds[i] = pipe.HGetAll(ctx, c.keys.Stats(name, t.Unix()))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("dsat: read stats of %s: %w", name, err)
	}
	acc := map[string]*stepAcc{}
	for _, s := range p.Order {
		acc[s] = newStepAcc(n)
	}
	for i, cmd := range cmds {
		for f, v := range cmd.Val() {
			step, field, ok := strings.Cut(f, ":")
			if !ok || field == "" {
				continue
			}
			a := acc[step]
			if a == nil {
				a = newStepAcc(n)
				acc[step] = a
			}
			a.add(i, field, v)
		}
	}
	for s, a := range acc {
		out.Steps[s] = a.series()
	}
	return out, nil
}

// stepAcc gathers one step's buckets.
type stepAcc struct {
	ended, failed, dead []int64
	run, wait           []LatencyHistogram
}

func newStepAcc(n int) *stepAcc {
	return &stepAcc{ended: make([]int64, n), failed: make([]int64, n), dead: make([]int64, n),
		run: make([]LatencyHistogram, n), wait: make([]LatencyHistogram, n)}
}

// add reads one hash field of bucket i; unknown fields are skipped.
func (a *stepAcc) add(i int, field, v string) {
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return
	}
	switch field {
	case statEnded:
		a.ended[i] += n
		return
	case statFailed:
		a.failed[i] += n
		return
	case statDead:
		a.dead[i] += n
		return
	}
	b, err := strconv.Atoi(field[1:])
	if err != nil || b < 0 || b >= LatencyBins {
		return
	}
	switch field[0] {
	case statRun:
		a.run[i][b] += n
	case statWait:
		a.wait[i][b] += n
	}
}

func quantile(h *LatencyHistogram, q float64) *float64 {
	v, ok := h.Quantile(q)
	if !ok {
		return nil
	}
	return &v
}

// series computes the per-bucket percentiles and the window's totals.
func (a *stepAcc) series() *StepSeries {
	n := len(a.ended)
	s := &StepSeries{Ended: a.ended, Failed: a.failed, Dead: a.dead, RunP50MS: make([]*float64, n),
		RunP95MS: make([]*float64, n), WaitP50MS: make([]*float64, n), WaitP95MS: make([]*float64, n)}
	var run, wait LatencyHistogram
	for i := range n {
		s.RunP50MS[i], s.RunP95MS[i] = quantile(&a.run[i], .5), quantile(&a.run[i], .95)
		s.WaitP50MS[i], s.WaitP95MS[i] = quantile(&a.wait[i], .5), quantile(&a.wait[i], .95)
		s.Totals.Ended += a.ended[i]
		s.Totals.Failed += a.failed[i]
		s.Totals.Dead += a.dead[i]
		for b := range LatencyBins {
			run[b] += a.run[i][b]
			wait[b] += a.wait[i][b]
		}
	}
	s.Totals.RunP50MS, s.Totals.RunP95MS = quantile(&run, .5), quantile(&run, .95)
	s.Totals.WaitP50MS, s.Totals.WaitP95MS = quantile(&wait, .5), quantile(&wait, .95)
	return s
}
