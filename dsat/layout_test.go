package dsat_test

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// TestLayoutHasOneOwner: only dsat/ (and lua/) know the Redis layout. The
// HTTP API and the satellites import neither go-redis nor the scripts; no other package
// calls a hash command (the task hash's fields are dsat's) or spells a
// key. A schema change in lua/lib.lua then touches dsat/ only.
func TestLayoutHasOneOwner(t *testing.T) {
	t.Parallel()
	hashCall := regexp.MustCompile(`^H(Get|MGet|Set|SetNX|GetAll|IncrBy|Del|Exists|Keys|Len)$`)
	keyLiteral := regexp.MustCompile(`(^|[^a-z]):(t|s|sat|sats|ev|log|res|retry|dead|idem|sc):|\{[a-z0-9_-]+@|\{sched\}|^dsat:[^ ]`)
	for _, dir := range []string{"../httpapi", "../workers", "../cmd/dsat", "../web", "../examples"} {
		files, _ := filepath.Glob(filepath.Join(dir, "*.go"))
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			src, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			file, err := parser.ParseFile(token.NewFileSet(), f, src, 0)
			if err != nil {
				t.Fatal(err)
			}
			for _, imp := range file.Imports {
				path, _ := strconv.Unquote(imp.Path.Value)
				if (filepath.Base(dir) == "httpapi" || filepath.Base(dir) == "workers") && (path == "github.com/redis/go-redis/v9" || path == "github.com/dsat-dev/dsat/lua") {
					t.Errorf("%s imports %s: ask dsat.Client instead", f, path)
				}
				if path == "github.com/dsat-dev/dsat/lua" && filepath.Base(dir) != "dsat" {
					t.Errorf("%s imports the scripts: only dsat runs them", f)
				}
			}
			ast.Inspect(file, func(n ast.Node) bool {
				switch x := n.(type) {
				case *ast.SelectorExpr:
					if hashCall.MatchString(x.Sel.Name) {
						t.Errorf("%s: calls %s: the task hash is dsat's (add a dsat.Client method)", f, x.Sel.Name)
					}
				case *ast.BasicLit:
					if x.Kind == token.STRING {
						if s, err := strconv.Unquote(x.Value); err == nil && keyLiteral.MatchString(s) {
							t.Errorf("%s: spells a Redis key %q: use dsat.Keys", f, s)
						}
					}
				}
				return true
			})
		}
	}
}
