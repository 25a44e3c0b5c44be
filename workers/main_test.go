package workers

import (
	"os"
	"testing"

	"go.uber.org/goleak"

	"github.com/dsat-dev/dsat/internal/redistest"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(testWorkerEnv); mode != "" {
		os.Exit(testWorker(mode)) // the process tests' child (process_worker_test.go)
	}
	redistest.WaitingTests(16)
	goleak.VerifyTestMain(m)
}
