package workers

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// job is one token being run on this satellite.
type job struct {
	r         *stepRunner
	m         msgRef
	d         dsat.Delivery
	reclaimed bool
	ctx       context.Context // cancelled on shutdown or when the task is cancelled
	cancel    context.CancelFunc
	cancelled atomic.Bool // the task was cancelled
	lost      atomic.Bool // another consumer took the token over
	dropped   atomic.Bool // a late begin found the token no longer wanted
	renewedAt atomic.Int64
	// leased: the token holds a running permit of its step's limits.
	leased atomic.Bool
	// limKey is the token's fairness key (limits.key), grantAt when its
	// step's limiter granted it a permit (zero: no limits): its ACK's time;
	// grantUntil the latest time its permit allows the ACK (a batch of rate
	// permits has a life; else grantAt).
	limKey              string
	grantAt, grantUntil time.Time
	// queueWait, when positive, is how long the token waited in the
	// stream past its step's queue_timeout: it is failed, not run.
	queueWait time.Duration

	// The late begin (see Config.BeginWindow): timer fires it once the
	// handler outlives the window; beginDone is closed when it returned.
	timer     *time.Timer
	beginDone chan struct{}

	// Progress (progress.go): pc is the parent of the handler's context,
	// started when the handler started, prog the throttle.
	pc      progressCtx
	started time.Time
	prog    progressState
}

// settle ends the job's begin window when its handler returned: it stops
// the late begin, or waits for it if it already fired. It reports whether
// the token was begun.
func (j *job) settle() bool {
	if j.timer == nil {
		return true // begun before the handler ran
	}
	if j.timer.Stop() {
		return false
	}
	<-j.beginDone
	return true
}

func newJob(r *stepRunner, m msgRef, env dsat.Envelope, reclaimed bool) *job {
	j := &job{r: r, m: m, reclaimed: reclaimed,
		d: dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: r.s.cfg.ID}}
	j.ctx, j.cancel = context.WithCancel(r.s.workCtx)
	j.pc = progressCtx{Context: j.ctx, j: j}
	j.renewedAt.Store(time.Now().UnixNano())
	return j
}

// key names the job's stream entry: its partition, step and entry id
// (entry ids repeat across the streams of one partition).
func (j *job) key() string { return entryKey(j.m, j.r.step.Name) }

// entryKey names an entry by partition, step, priority level (its stream)
// and id.
func entryKey(m msgRef, step string) string {
	if m.Priority != dsat.PriorityNormal {
		step += "/" + m.Priority.String()
	}
	return m.Part.Tag() + " " + step + " " + m.ID
}

// jobTable tracks the jobs running on this satellite, for the cancel
// watcher, claim renewal and to skip own pending entries re-read.
type jobTable struct {
	mu   sync.Mutex
	jobs map[string]*job
}

func newJobTable() *jobTable { return &jobTable{jobs: map[string]*job{}} }

func (t *jobTable) add(j *job) {
	t.mu.Lock()
	t.jobs[j.key()] = j
	t.mu.Unlock()
}

func (t *jobTable) remove(j *job) {
	t.mu.Lock()
	delete(t.jobs, j.key())
	t.mu.Unlock()
}

func (t *jobTable) running(m msgRef, step string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.jobs[entryKey(m, step)]
	return ok
}

func (t *jobTable) snapshot() []*job {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]*job, 0, len(t.jobs))
	for _, j := range t.jobs {
		out = append(out, j)
	}
	return out
}
