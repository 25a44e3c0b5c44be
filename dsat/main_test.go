package dsat

import (
	"os"
	"testing"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestMain lets the tests that call t.Parallel (most of them: each runs
// on its own miniredis and redis-server) wait on Redis side by side.
func TestMain(m *testing.M) {
	redistest.WaitingTests(16)
	os.Exit(m.Run())
}
