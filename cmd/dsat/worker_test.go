package main

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/httpapi"
)

// TestWorkerReadyz: a worker's /readyz is 200 while Redis answers (it
// loads the scripts) and 503, saying why, when Redis is gone; /healthz
// stays 200.
func TestWorkerReadyz(t *testing.T) {
	t.Parallel()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr(), MaxRetries: -1})
	t.Cleanup(func() { rdb.Close() })
	p, err := dsat.ParsePipeline("p.yaml", []byte("name: p\nversion: 1.0.0\nsteps:\n  a: {handler: echo}\n"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	// Load the scripts first: on a loaded machine, compiling all of them
	// in miniredis's Lua under -race can take longer than the probe's 2 s.
	if err := c.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(workerMux(c, httpapi.NewMetrics(c)))
	defer srv.Close()
	get := func(path string) (int, string) {
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	if code, body := get("/readyz"); code != 200 || !strings.Contains(body, "ready") {
		t.Fatalf("readyz with Redis up: %d %s", code, body)
	}
	mr.Close()
	if code, body := get("/readyz"); code != 503 || !strings.Contains(body, "Redis does not answer") {
		t.Fatalf("readyz with Redis down: %d %s", code, body)
	}
	if code, _ := get("/healthz"); code != 200 {
		t.Fatalf("healthz: %d", code)
	}
}
