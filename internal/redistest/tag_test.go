package redistest_test

import (
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	. "github.com/dsat-dev/dsat/internal/redistest" // an external test: redistest is not compiled twice
)

// TestFullSuiteHasTheTag: the full suite without -tags integration would
// silently leave the browser tests and the fault suite out of the build.
func TestFullSuiteHasTheTag(t *testing.T) {
	if Integration() && !Tagged {
		t.Fatalf("%s=1 (or DSAT_REQUIRE_REDIS=1) without -tags %s: the browser tests and integration/ are not compiled; "+
			"the full suite is %s=1 go test -race -tags %s ./...", IntegrationEnv, IntegrationTag, IntegrationEnv, IntegrationTag)
	}
}

// TestHeavyTestsAreTagged: a test file that imports chromedp, or any test
// file of integration/, carries the integration build tag, so that the
// fast `go test ./...` does not compile it (nor chromedp).
func TestHeavyTestsAreTagged(t *testing.T) {
	tag := "//go:build " + IntegrationTag + "\n"
	n := 0
	err := filepath.WalkDir("../..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != "../.." {
			return filepath.SkipDir // .git, .ci
		}
		if d.IsDir() || !strings.HasSuffix(path, "_test.go") {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(b)
		f, err := parser.ParseFile(token.NewFileSet(), path, b, parser.ImportsOnly)
		if err != nil {
			return err
		}
		heavy := filepath.Base(filepath.Dir(path)) == "integration"
		for _, imp := range f.Imports {
			heavy = heavy || strings.HasPrefix(imp.Path.Value, `"github.com/chromedp/`)
		}
		if heavy {
			n++
			if !strings.HasPrefix(src, tag) {
				t.Errorf("%s: a browser or integration test without %q on its first line", path, strings.TrimSpace(tag))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no browser or integration test file found: the walk is broken")
	}
}
