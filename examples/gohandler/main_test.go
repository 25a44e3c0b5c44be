package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

func TestWordcount(t *testing.T) {
	r, err := wordcount(context.Background(), &dsat.Task{Payload: []byte(`{"text":"the \"quick\" brown fox"}`)})
	if err != nil || string(r.Output) != `{"words":4}` {
		t.Fatalf("wordcount: %s, %v", r.Output, err)
	}
	if _, err := wordcount(context.Background(), &dsat.Task{Payload: []byte(`[1]`)}); err == nil || !strings.Contains(err.Error(), "skip retry") {
		t.Fatalf("bad input: %v, want a SkipRetry error", err)
	}
}

// TestRunsATask runs the example's run (flags, pipelines, Redis, the
// satellite) on each backend for one task of gowords.yaml, then stops it.
func TestRunsATask(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		t.Parallel() // each stop waits out a 2 s blocking read
		rdb, _ := be.New(t)
		addr := rdb.(*redis.Client).Options().Addr
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var logs syncBuffer // the satellite logs from several goroutines
		done := make(chan error, 1)
		go func() { done <- run(ctx, []string{"--redis", "redis://" + addr, "--pipelines", "."}, &logs) }()

		c := client(t, rdb)
		id := submit(t, c)
		waitSucceeded(t, c, id, 10*time.Second)
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("run returned %v\n%s", err, logs.String())
			}
		case <-time.After(35 * time.Second):
			t.Fatal("run did not return after its context ended")
		}
	})
}

// TestBinaryStopsOnSIGTERM builds the example as a user would, runs it
// against redis-server for one task and stops it with SIGTERM.
func TestBinaryStopsOnSIGTERM(t *testing.T) {
	redistest.Slow(t, "builds the example binary")
	srv := redistest.Start(t)
	bin := filepath.Join(t.TempDir(), "gohandler")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	cmd := exec.Command(bin, "--pipelines", ".")
	cmd.Env = append(os.Environ(), "DSAT_REDIS_URL=redis://"+srv.Addr)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	c := client(t, srv.Client(t))
	waitSucceeded(t, c, submit(t, c), 20*time.Second)
	_ = cmd.Process.Signal(syscall.SIGTERM)
	errc := make(chan error, 1)
	go func() { errc <- cmd.Wait() }()
	select {
	case err := <-errc:
		if err != nil {
			t.Fatalf("after SIGTERM: %v\n%s", err, logs.String())
		}
	case <-time.After(35 * time.Second):
		t.Fatalf("still running 35 s after SIGTERM\n%s", logs.String())
	}
	if !strings.Contains(logs.String(), "stopping") {
		t.Errorf("no graceful stop in the logs:\n%s", logs.String())
	}
}

// TestReadmeSnippet: the README's Go block is this file's code, verbatim,
// so it compiles as shown.
func TestReadmeSnippet(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.ReadFile("main.go")
	if err != nil {
		t.Fatal(err)
	}
	blocks := regexp.MustCompile("(?s)```go\n(.*?)```").FindAllSubmatch(readme, -1)
	found := false
	for _, b := range blocks {
		if !bytes.Contains(b[1], []byte("workers.NewMux()")) {
			continue
		}
		found = true
		for _, decl := range bytes.Split(bytes.TrimSpace(b[1]), []byte("\n\n")) {
			if !bytes.Contains(src, decl) {
				t.Errorf("README's Go handler block is not in examples/gohandler/main.go:\n%s", decl)
			}
		}
	}
	if !found {
		t.Fatal("README shows no Go handler registered on a workers.Mux")
	}
}

func client(t *testing.T, rdb redis.UniversalClient) *dsat.Client {
	t.Helper()
	ps, err := dsat.LoadPipelineDir(".")
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, ps...)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func submit(t *testing.T, c *dsat.Client) string {
	t.Helper()
	s, err := c.Submit(context.Background(), "gowords", []byte(`{"text":"the quick brown fox"}`), dsat.SubmitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s.ID
}

func waitSucceeded(t *testing.T, c *dsat.Client, id string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last string
	for time.Now().Before(deadline) {
		st, err := c.Get(context.Background(), id)
		if err == nil {
			if st.Status == "succeeded" {
				var out struct{ Words int }
				if err := json.Unmarshal(st.Result, &out); err != nil || out.Words != 4 {
					t.Fatalf("result %s, want {\"words\":4}", st.Result)
				}
				return
			}
			last = fmt.Sprintf("%s %v %s", st.Status, st.Steps, st.Error)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("task %s did not succeed within %s: %s", id, limit, last)
}

// syncBuffer is a bytes.Buffer safe for concurrent writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
