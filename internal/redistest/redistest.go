// Package redistest starts Redis for tests: miniredis in-process, and real
// redis-server processes on free loopback ports in temporary directories,
// stopped when the test ends. Contract tests run the same cases on every
// backend with ForEachBackend.
//
// When redis-server is not on PATH the real-Redis cases are skipped with a
// message, unless DSAT_REQUIRE_REDIS=1 (as in CI) or DSAT_INTEGRATION=1,
// which make them fail.
//
// The slow tests (the fault and cluster suite in integration/, and a few
// long cases elsewhere) call Slow first: they run only with
// DSAT_INTEGRATION=1, so that `go test ./...` stays a fast check. The
// browser tests and integration/ also carry the build tag IntegrationTag:
// the full suite is DSAT_INTEGRATION=1 go test -race -tags integration ./...
package redistest

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process on a loopback port.
type Server struct {
	Addr string
	Dir  string
	conf string
	cmd  *exec.Cmd
	done chan struct{}
}

// RequireBinary skips (or, with DSAT_REQUIRE_REDIS=1, fails) the test when
// the named binary (redis-server, redis-cli) is missing.
func RequireBinary(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv("DSAT_REQUIRE_REDIS") == "1" || os.Getenv(IntegrationEnv) == "1" {
		t.Fatalf("%s not found on PATH and DSAT_REQUIRE_REDIS=1 or %s=1: install Redis (apt-get install redis-server)", name, IntegrationEnv)
	}
	t.Skipf("%s not found on PATH: install Redis (apt-get install redis-server) to run the real-Redis half", name)
	return ""
}

// IntegrationEnv names the switch of the full suite: with
// DSAT_INTEGRATION=1 the slow tests run too.
const IntegrationEnv = "DSAT_INTEGRATION"

// IntegrationTag is the build tag of the test files that need more than
// Go and Redis: the dashboard's browser tests (chromedp, Chromium) in web/
// and the fault and cluster suite in integration/. The fast
// `go test ./...` does not even compile them (a cold build of chromedp and
// of those tests is a good part of its time); the full suite passes
// -tags integration.
const IntegrationTag = "integration"

// Integration says whether the full suite runs: DSAT_INTEGRATION=1, or
// DSAT_REQUIRE_REDIS=1 (CI's "skip nothing"), which implies it so that a
// CI run never counts a skipped slow test as a pass.
func Integration() bool {
	return os.Getenv(IntegrationEnv) == "1" || os.Getenv("DSAT_REQUIRE_REDIS") == "1"
}

// Slow skips t unless Integration(): a test that takes seconds (what says
// why), part of the full suite rather than of the fast `go test ./...`.
func Slow(t testing.TB, what string) {
	t.Helper()
	if !Integration() {
		t.Skipf("slow (%s): runs with %s=1, see README \"Tests\"", what, IntegrationEnv)
	}
}

// WaitingTests lets up to n of a package's parallel tests (those that
// call t.Parallel) run at once, unless -test.parallel was given. Call it
// from TestMain before m.Run. The tests that call t.Parallel spend their
// seconds waiting on timers, Redis and child processes, not computing, so
// the default (one per CPU) would leave a small machine idle.
func WaitingTests(n int) {
	flag.Parse()
	given := false
	flag.Visit(func(f *flag.Flag) { given = given || f.Name == "test.parallel" })
	if !given {
		if err := flag.Set("test.parallel", strconv.Itoa(n)); err != nil {
			panic(err)
		}
	}
}

// FreePort returns a loopback TCP port that was free a moment ago.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs redis-server with the given extra config lines (e.g.
// "appendonly yes") and stops it when the test ends.
func Start(t testing.TB, conf ...string) *Server {
	t.Helper()
	bin := RequireBinary(t, "redis-server")
	dir := t.TempDir()
	var lastErr error
	for try := 0; try < 5; try++ {
		port := FreePort(t)
		s := &Server{Addr: fmt.Sprintf("127.0.0.1:%d", port), Dir: dir}
		s.conf = strings.Join(append([]string{
			fmt.Sprintf("port %d", port), "bind 127.0.0.1", "dir " + dir,
			`save ""`, "appendonly no", "daemonize no", "loglevel warning",
			"logfile " + dir + "/redis.log",
		}, conf...), "\n") + "\n"
		if lastErr = s.start(bin); lastErr == nil {
			t.Cleanup(s.Stop)
			return s
		}
	}
	t.Fatalf("redis-server would not start: %v", lastErr)
	return nil
}

func (s *Server) start(bin string) error {
	s.cmd = exec.Command(bin, "-")
	s.cmd.Stdin = strings.NewReader(s.conf)
	s.cmd.Dir = s.Dir
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func() { _ = s.cmd.Wait(); close(s.done) }()
	return s.waitReady(5 * time.Second)
}

func (s *Server) waitReady(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("redis-server exited: %s", s.logTail())
		default:
		}
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			// Which server answers: another test's redis-server can hold
			// the port (FreePort's port was free a moment ago), and ours
			// then exits; PING alone would take the other one for ours.
			_, _ = c.Write([]byte("INFO server\r\n"))
			_ = c.SetReadDeadline(time.Now().Add(time.Second))
			info := readInfo(bufio.NewReader(c))
			c.Close()
			if pid := infoPID(info); pid == s.cmd.Process.Pid || pid > 0 && parentPID(pid) == s.cmd.Process.Pid {
				return nil // ours, or started by ours (a wrapper script, e.g. valgrind's)
			}
			if strings.Contains(info, "\r\nprocess_id:") {
				s.Stop()
				return fmt.Errorf("another redis-server answers on %s", s.Addr)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.Stop()
	return fmt.Errorf("redis-server on %s not ready after %s: %s", s.Addr, limit, s.logTail())
}

// readInfo reads the bulk string reply of INFO (empty on an error reply
// or a failed read).
// infoPID is the process_id an INFO reply names (0 for none).
func infoPID(info string) int {
	_, rest, ok := strings.Cut(info, "\r\nprocess_id:")
	if !ok {
		return 0
	}
	v, _, _ := strings.Cut(rest, "\r\n")
	n, _ := strconv.Atoi(v)
	return n
}

// parentPID is the parent of process pid, from /proc (0 where unknown).
func parentPID(pid int) int {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// pid (comm) state ppid ...: comm may hold spaces, so read after its ')'.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 2 {
		return 0
	}
	n, _ := strconv.Atoi(f[1])
	return n
}

func readInfo(r *bufio.Reader) string {
	head, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(head, "$") {
		return ""
	}
	n, err := strconv.Atoi(strings.TrimSpace(head[1:]))
	if err != nil || n < 0 {
		return ""
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		return ""
	}
	return string(body)
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.Dir + "/redis.log")
	if len(b) > 500 {
		b = b[len(b)-500:]
	}
	return string(b)
}

// Stop kills the server (SIGKILL: tests that want a clean shutdown send
// SHUTDOWN themselves) and waits for it to exit.
func (s *Server) Stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	select {
	case <-s.done:
		return
	default:
	}
	_ = s.cmd.Process.Kill()
	<-s.done
}

// Restart starts the server again on the same port, directory and config
// (after Stop or a crash).
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop()
	if err := s.start(RequireBinary(t, "redis-server")); err != nil {
		t.Fatalf("restart redis-server: %v", err)
	}
}

// Client returns a go-redis client for the server, closed when the test
// ends.
func (s *Server) Client(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Backend is one kind of Redis a contract test runs on.
type Backend struct {
	Name string
	// Real is true for redis-server (the judge where miniredis differs).
	Real bool
	// New starts a fresh, empty instance for one test and returns a client.
	// Mini is set for the miniredis backend.
	New func(t testing.TB) (redis.UniversalClient, *miniredis.Miniredis)
}

// Backends returns miniredis and real redis-server.
func Backends() []Backend {
	return []Backend{
		{Name: "miniredis", New: func(t testing.TB) (redis.UniversalClient, *miniredis.Miniredis) {
			m := miniredis.RunT(t)
			c := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return c, m
		}},
		{Name: "redis", Real: true, New: func(t testing.TB) (redis.UniversalClient, *miniredis.Miniredis) {
			return Start(t).Client(t), nil
		}},
	}
}

// ForEachBackend runs f as a subtest on each backend.
func ForEachBackend(t *testing.T, f func(t *testing.T, b Backend)) {
	for _, b := range Backends() {
		t.Run(b.Name, func(t *testing.T) { f(t, b) })
	}
}
