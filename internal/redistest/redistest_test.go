package redistest_test

import (
	"os"
	"strings"
	"testing"

	. "github.com/dsat-dev/dsat/internal/redistest" // an external test: redistest is not compiled twice
)

// TestCIRunsTheFullSuite: CI must run the slow tests (DSAT_INTEGRATION=1)
// and the tagged ones (-tags integration), and may skip nothing for want
// of redis-server, chromium, python3 or node, so that a skipped test never
// counts as a pass there.
func TestCIRunsTheFullSuite(t *testing.T) {
	b, err := os.ReadFile("../../.ci/run")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] == "#" || f[0] == "echo" || !strings.Contains(line, "go test") || strings.Contains(line, "-fuzz") {
			continue
		}
		for _, want := range []string{IntegrationEnv + "=1", "DSAT_REQUIRE_REDIS=1", "DSAT_REQUIRE_BROWSER=1", "DSAT_REQUIRE_PYTHON=1", "DSAT_REQUIRE_NODE=1", "-race", "-tags " + IntegrationTag, "./..."} {
			if !strings.Contains(line, want) {
				t.Errorf(".ci/run runs the tests without %s: %s", want, line)
			}
		}
		return
	}
	t.Fatal(".ci/run runs no go test ./...")
}

func TestIntegrationSwitch(t *testing.T) {
	for _, tc := range []struct {
		integration, require string
		want                 bool
	}{
		{"", "", false}, {"0", "", false}, {"1", "", true}, {"", "1", true}, {"1", "1", true},
	} {
		t.Setenv(IntegrationEnv, tc.integration)
		t.Setenv("DSAT_REQUIRE_REDIS", tc.require)
		if got := Integration(); got != tc.want {
			t.Errorf("DSAT_INTEGRATION=%q DSAT_REQUIRE_REDIS=%q: Integration() = %v, want %v", tc.integration, tc.require, got, tc.want)
		}
	}
}
