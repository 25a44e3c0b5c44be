package integration

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// dsatBin is the dsat binary the tests run as child processes.
var dsatBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "dsat-integration-")
	if err != nil {
		panic(err)
	}
	dsatBin = filepath.Join(dir, "dsat")
	if out, err := exec.Command("go", "build", "-o", dsatBin, "../cmd/dsat").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build dsat: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}
