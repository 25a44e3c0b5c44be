package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/alicebob/miniredis/v2"
	"github.com/dsat-dev/dsat/dsat"
	"github.com/redis/go-redis/v9"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestBenchDeployed runs "dsat serve" and "dsat worker" as children of the
// bench, checks the figures and that both children are gone afterwards.
func TestBenchDeployed(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	code, out, errs := cli(t, nil, "bench", "--json", "--redis", "redis://"+srv.Addr, "--mode", "deployed",
		"--tasks", "600", "--steps", "2", "--batch", "100", "--clients", "2")
	var res benchResult
	if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Errors != 0 || res.Tasks != 600 || res.Steps != 2 || res.Mode != "deployed" {
		t.Fatalf("bench: exit %d\n%s\n%s", code, out, errs)
	}
	if res.Seconds <= 0 || res.StepsPerS <= 0 || res.RedisUSPerStep <= 0 || res.SubmitPerS <= 0 {
		t.Fatalf("figures: %+v", res)
	}
	for _, name := range []string{"serve", "worker"} {
		if !strings.Contains(errs, "dsat bench: starting ") || !strings.Contains(errs, " "+name+" --redis ") {
			t.Fatalf("the %s command line is not printed:\n%s", name, errs)
		}
	}
	// The children listened on these loopback addresses; nothing may
	// listen there any more.
	for _, m := range regexp.MustCompile(`--addr (127\.0\.0\.1:\d+)`).FindAllStringSubmatch(errs, -1) {
		if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
			c.Close()
			t.Fatalf("a child still listens on %s", m[1])
		}
	}
}

// TestBenchConcurrencyFlag: without --concurrency the steps get the
// pipeline's default (autoscaled) pools, with it fixed pools of N.
func TestBenchConcurrencyFlag(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args     []string
		min, max int
	}{
		{nil, dsat.DefaultConcurrencyMin, dsat.DefaultConcurrencyMax},
		{[]string{"--concurrency", "5"}, 5, 5},
	} {
		args := append([]string{"bench", "--json", "--mode", "drain", "--tasks", "200", "--steps", "2"}, tc.args...)
		code, out, errs := runCLI(t, nil, "", args...)
		var res benchResult
		if code != 0 || json.Unmarshal([]byte(out), &res) != nil || res.Errors != 0 {
			t.Fatalf("bench %v: exit %d\n%s\n%s", tc.args, code, out, errs)
		}
		if len(res.PoolMax) != 2 {
			t.Fatalf("pool_max %v", res.PoolMax)
		}
		for step, n := range res.PoolMax {
			if n < tc.min || n > tc.max {
				t.Fatalf("%v: step %s had a pool of %d, want %d..%d", tc.args, step, n, tc.min, tc.max)
			}
		}
	}
	if code, _, errs := runCLI(t, nil, "", "bench", "--concurrency", "0"); code != 2 || !strings.Contains(errs, "--concurrency 0") {
		t.Fatalf("--concurrency 0: exit %d %s", code, errs)
	}
}

// TestBenchDeploymentThatNeverGetsReadyIsCleanedUp: when the children do
// not become ready, startDeployment stops them and returns the error (it
// used to dereference a nil deployment in its clean-up and panic).
func TestBenchDeploymentThatNeverGetsReadyIsCleanedUp(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	yaml := benchYAML(1, 0, 0, "")
	p, err := dsat.ParsePipeline("bench.yaml", []byte(yaml))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{Prefix: "dsatbench"}, p)
	if err != nil {
		t.Fatal(err)
	}
	var errb lockedBuffer
	env := &cliEnv{stdout: io.Discard, stderr: &errb, stdin: strings.NewReader(""), getenv: func(string) string { return "" }}
	o := benchFlags(flag.NewFlagSet("bench", flag.ContinueOnError), env)
	// Nothing listens on this port: serve never gets ready.
	b := &bench{c: c, rdb: rdb, p: p, o: o, yaml: yaml, url: fmt.Sprintf("redis://127.0.0.1:%d", redistest.FreePort(t)), env: env}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	d, stop, err := b.startDeployment(ctx)
	if err == nil || d != nil || stop != nil {
		t.Fatalf("startDeployment = %v, stop set %t, %v; want an error and nothing to stop", d, stop != nil, err)
	}
	for _, m := range regexp.MustCompile(`--addr (127\.0\.0\.1:\d+)`).FindAllStringSubmatch(errb.String(), -1) {
		if c, err := net.DialTimeout("tcp", m[1], time.Second); err == nil {
			c.Close()
			t.Fatalf("a child still listens on %s", m[1])
		}
	}
}

// lockedBuffer is a bytes.Buffer the children's log copiers may write to
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
