//go:build integration

package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// dsatBin is the dsat binary the tests run as child processes.
var dsatBin string

// TestMain builds dsat for the suite; without DSAT_INTEGRATION=1 (or
// DSAT_REQUIRE_REDIS=1) it builds nothing and every test skips: the suite
// takes minutes. (The fast `go test ./...` does not even compile it: these
// files need -tags integration.)
func TestMain(m *testing.M) {
	if !redistest.Integration() {
		os.Exit(m.Run())
	}
	dir, err := os.MkdirTemp("", "dsat-integration-")
	if err != nil {
		panic(err)
	}
	dsatBin = filepath.Join(dir, "dsat")
	if out, err := exec.Command("go", "build", "-tags", "dsattest", "-o", dsatBin, "../cmd/dsat").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build dsat: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// fullSuite skips the test unless the full suite runs (DSAT_INTEGRATION=1).
// Every test of this package calls it first.
func fullSuite(t *testing.T) {
	t.Helper()
	redistest.Slow(t, "fault and cluster suite, minutes of real redis-server and dsat processes")
}
