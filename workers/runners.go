package workers

import (
	"sync"
	"sync/atomic"
	"time"
)

// runnerIdle is how long a handler goroutine with nothing to run waits for
// the next job before it exits.
const runnerIdle = 10 * time.Second

// runners keeps a step's handler goroutines for reuse, so that a loaded
// step does not start and end a goroutine per token: a job goes to an idle
// goroutine when one is waiting, and a new goroutine starts only when none
// is. A goroutine exits after runnerIdle without a job, or once the
// satellite stops reading (done); wg lets Stop wait for every one of them.
type runners struct {
	jobs    chan *job // unbuffered: a send succeeds only to an idle goroutine
	done    <-chan struct{}
	wg      *sync.WaitGroup
	run     func(*job)
	idle    atomic.Int32 // goroutines waiting for a job
	started atomic.Int64 // goroutines started so far
}

func newRunners(done <-chan struct{}, wg *sync.WaitGroup, run func(*job)) *runners {
	return &runners{jobs: make(chan *job), done: done, wg: wg, run: run}
}

// start runs j on an idle goroutine, or on a new one.
func (rs *runners) start(j *job) {
	select {
	case rs.jobs <- j:
	default:
		rs.wg.Add(1)
		rs.started.Add(1)
		go rs.loop(j)
	}
}

func (rs *runners) loop(j *job) {
	defer rs.wg.Done()
	idle := time.NewTimer(runnerIdle)
	defer idle.Stop()
	for {
		rs.run(j)
		idle.Reset(runnerIdle)
		rs.idle.Add(1)
		select {
		case j = <-rs.jobs:
			rs.idle.Add(-1)
		case <-idle.C:
			rs.idle.Add(-1)
			return
		case <-rs.done:
			rs.idle.Add(-1)
			return
		}
	}
}
