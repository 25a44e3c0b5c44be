package workers

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	if mode := os.Getenv(testWorkerEnv); mode != "" {
		os.Exit(testWorker(mode)) // the process tests' child (process_worker_test.go)
	}
	goleak.VerifyTestMain(m)
}
