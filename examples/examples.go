// Package examples holds the example pipelines that dsat dev loads and the
// README walks through: textstats (fan-out, switch, join), wordcount (an
// exec step in shell), flaky (retries and dead letters) and pages (a map and
// a settled join).
package examples

import (
	"embed"
	"io/fs"
	"os"
	"path/filepath"
)

//go:embed *.yaml *.sh
var files embed.FS

// FS returns the example files.
func FS() fs.FS { return files }

// WriteTo copies the examples into dir (so exec steps find their scripts)
// and returns dir.
func WriteTo(dir string) (string, error) {
	entries, err := files.ReadDir(".")
	if err != nil {
		return "", err
	}
	for _, e := range entries {
		b, err := files.ReadFile(e.Name())
		if err != nil {
			return "", err
		}
		mode := os.FileMode(0o644)
		if filepath.Ext(e.Name()) == ".sh" {
			mode = 0o755
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, mode); err != nil {
			return "", err
		}
	}
	return dir, nil
}
