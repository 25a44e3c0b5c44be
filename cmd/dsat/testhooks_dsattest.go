//go:build dsattest

package main

import (
	"math/rand/v2"
	"os"
	"strconv"
	"syscall"

	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/workers"
)

// crashHookEnv is a fault-injection switch of the integration suite's
// binary (built with -tags dsattest; a release has no such switch): set to
// a probability (0..1), the worker kills itself with SIGKILL after a
// handler returned and before its Complete, that share of the time.
const crashHookEnv = "DSAT_TEST_CRASH_BEFORE_COMPLETE"

func installTestHooks(env *cliEnv, log zerolog.Logger, cfg *workers.Config) {
	p, err := strconv.ParseFloat(env.getenv(crashHookEnv), 64)
	if err != nil || p <= 0 {
		return
	}
	log.Warn().Float64("probability", p).Msg(crashHookEnv + " is set: this worker will crash on purpose (tests only)")
	cfg.SetBeforeComplete(func(*dsat.Task) {
		if rand.Float64() < p {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	})
}
