package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/dsat-dev/dsat/httpapi"
)

// http measures submission over HTTP: an in-process API on a loopback
// port, --clients keep-alive clients posting for --duration.
func (b *bench) http(ctx context.Context) (benchResult, error) {
	l, err := listen("127.0.0.1:0")
	if err != nil {
		return benchResult{}, err
	}
	api := httpapi.NewRouter(httpapi.Config{Client: b.c, Logger: b.log})
	sctx, stop := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- serveHTTP(sctx, l, api, api) }()
	defer func() { stop(); <-served }()

	url := baseURL(l) + "/v1/pipelines/" + b.p.Name + "/tasks"
	body := b.payload
	per := 1
	if n := *b.o.batch; n > 0 {
		url = baseURL(l) + "/v1/pipelines/" + b.p.Name + "/batch"
		items := make([]string, n)
		for i := range items {
			items[i] = string(b.payload)
		}
		body, per = []byte("["+strings.Join(items, ",")+"]"), n
	}
	tr := &http.Transport{MaxIdleConnsPerHost: *b.o.clients, MaxConnsPerHost: *b.o.clients}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	cpu0 := redisCPU(ctx, b.rdb)
	var mu sync.Mutex
	var lat []float64
	tasks, errors := 0, 0
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < *b.o.clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Since(start) < *b.o.duration && ctx.Err() == nil {
				t0 := time.Now()
				req, _ := http.NewRequestWithContext(ctx, "POST", url, bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				res, err := hc.Do(req)
				ok := err == nil && res.StatusCode == http.StatusAccepted
				if err == nil {
					_, _ = io.Copy(io.Discard, res.Body)
					res.Body.Close()
				}
				d := float64(time.Since(t0).Microseconds()) / 1000
				mu.Lock()
				if ok {
					tasks += per
					lat = append(lat, d)
				} else {
					errors++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	secs := time.Since(start).Seconds()
	sort.Float64s(lat)
	pct := func(q float64) float64 {
		if len(lat) == 0 {
			return 0
		}
		return lat[min(len(lat)-1, int(q*float64(len(lat))))]
	}
	res := benchResult{Mode: "http", Tasks: tasks, Steps: 0, Seconds: secs, TasksPerS: float64(tasks) / secs,
		P50: pct(.5), P95: pct(.95), P99: pct(.99), RedisCPU: redisCPU(ctx, b.rdb) - cpu0, Errors: errors}
	if errors > 0 {
		return res, fmt.Errorf("%d requests failed", errors)
	}
	return res, nil
}
