package main

import (
	"encoding/json"
	"github.com/dsat-dev/dsat/dsat"
	"net"
	"regexp"
	"strings"
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
