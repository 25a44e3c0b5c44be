//go:build integration

package integration

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"
)

// dsatProc is a dsat child process (serve or worker).
type dsatProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	url  chan string
}

// startDsat runs "dsat args..." with its logs in a file of the test's temp
// dir; it is stopped when the test ends.
func startDsat(t *testing.T, name string, env []string, args ...string) *dsatProc {
	t.Helper()
	p := &dsatProc{name: name, log: filepath.Join(t.TempDir(), name+".log"), done: make(chan struct{}), url: make(chan string, 1)}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	p.cmd = exec.Command(dsatBin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout = f
	stderr, _ := p.cmd.StderrPipe()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer f.Close()
		urlRe := regexp.MustCompile(`"url":"(http://[^"]+)"`)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 1<<16), 1<<20)
		for sc.Scan() {
			fmt.Fprintln(f, sc.Text())
			if m := urlRe.FindStringSubmatch(sc.Text()); m != nil {
				select {
				case p.url <- m[1]:
				default:
				}
			}
		}
	}()
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop(t) })
	return p
}

// kill sends SIGKILL: a crash, nothing cleaned up.
func (p *dsatProc) kill() {
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

func (p *dsatProc) stop(t *testing.T) {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(15 * time.Second):
		t.Logf("%s did not stop within 15s; killing it", p.name)
		p.kill()
	}
}

// waitURL returns the URL the process logged it listens on.
func (p *dsatProc) waitURL(t *testing.T) string {
	t.Helper()
	select {
	case u := <-p.url:
		return u
	case <-p.done:
		b, _ := os.ReadFile(p.log)
		t.Fatalf("%s exited:\n%s", p.name, b)
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not log its URL", p.name)
	}
	return ""
}

func (p *dsatProc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}
