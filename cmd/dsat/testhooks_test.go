package main

import (
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReleaseHasNoCrashSwitch: the self-kill switch of the fault suite is
// compiled only with -tags dsattest; a release build's sources never read
// it.
func TestReleaseHasNoCrashSwitch(t *testing.T) {
	for _, dir := range []string{".", "../../workers"} {
		pkg, err := build.Default.ImportDir(dir, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range pkg.GoFiles {
			b, err := os.ReadFile(filepath.Join(dir, f))
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "DSAT_TEST_CRASH") || strings.Contains(string(b), "SetBeforeComplete") {
				t.Errorf("%s/%s, part of a release build, holds the test-only crash switch", dir, f)
			}
		}
	}
}
