//go:build integration

package dsat_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// evalStats reads real Redis's EVALSHA calls and microseconds since the
// last CONFIG RESETSTAT.
func evalStats(t *testing.T, h *harness) (calls, usec int64) {
	t.Helper()
	info := h.rdb.Info(h.ctx, "commandstats").Val()
	for _, line := range strings.Split(info, "\n") {
		if !strings.HasPrefix(line, "cmdstat_evalsha:") {
			continue
		}
		for _, kv := range strings.Split(strings.TrimSpace(strings.TrimPrefix(line, "cmdstat_evalsha:")), ",") {
			k, v, _ := strings.Cut(kv, "=")
			n, _ := strconv.ParseInt(v, 10, 64)
			switch k {
			case "calls":
				calls = n
			case "usec":
				usec = n
			}
		}
	}
	return calls, usec
}

// readAll reads every new delivery of a step.
func readAll(h *harness, step string) []dsat.Delivery {
	var all []dsat.Delivery
	for {
		ds := h.read(step)
		if len(ds) == 0 {
			return all
		}
		all = append(all, ds...)
	}
}

// TestMapCost measures, on real Redis, what a map costs: the map step's
// complete call for 1,000 elements, an element's complete, the complete
// that fires a join of 1,000, and the memory of a finished task with a
// 100-element map (its own keys, as dsat bench's task_key_bytes).
func TestMapCost(t *testing.T) {
	t.Parallel()
	redistest.Slow(t, "a measurement on real redis-server")
	b := redistest.Backends()[1]
	h := newHarness(t, b, `
name: mapcost
version: 1.0.0
steps:
  split: {handler: echo, map: pages, next: [ocr]}
  ocr: {handler: echo, next: [collect]}
  collect: {handler: echo, join: all}
`)
	h.lazy = true // as a satellite runs a handler that returns within its begin window: one call per token
	items := func(n int) string {
		parts := make([]string, n)
		for i := range parts {
			parts[i] = fmt.Sprintf(`{"page":%d}`, i)
		}
		return `{"pages":[` + strings.Join(parts, ",") + `]}`
	}

	id := h.submit(items(1000))
	split := readAll(h, "split")
	h.rdb.ConfigResetStat(h.ctx)
	h.run(split[0], pass)
	calls, usec := evalStats(t, h)
	t.Logf("map of 1,000 elements: %d call(s), %d µs in Redis (%.1f µs per element)", calls, usec, float64(usec)/1000)
	ocr := readAll(h, "ocr")
	eq(t, "item tokens", len(ocr), 1000)
	h.rdb.ConfigResetStat(h.ctx)
	for _, d := range ocr[:999] {
		h.run(d, pass)
	}
	calls, usec = evalStats(t, h)
	t.Logf("an element's complete: %d calls, %.1f µs each in Redis", calls, float64(usec)/float64(calls))
	h.rdb.ConfigResetStat(h.ctx)
	h.run(ocr[999], pass)
	calls, usec = evalStats(t, h)
	t.Logf("the last element's complete, firing the join of 1,000: %d call(s), %d µs in Redis", calls, usec)
	h.drain(map[string]handlerFunc{"collect": pass})
	eq(t, "status", h.state(id).Status, dsat.StatusSucceeded)

	id = h.submit(items(100))
	h.drain(map[string]handlerFunc{"split": pass, "ocr": pass, "collect": pass})
	st := h.state(id)
	eq(t, "status", st.Status, dsat.StatusSucceeded)
	mem, err := h.c.TaskMemory(h.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	evs := h.events(id)
	t.Logf("finished task with a 100-element map: %d bytes of Redis memory (state, %d events, result)", mem, len(evs))
	h.checkInvariants(id)
	h.streamsEmpty()

	// With max_parallel: 50, the map step's call queues 50 tokens and
	// keeps the other elements in the hash.
	par := newHarness(t, b, `
name: mapcostpar
version: 1.0.0
steps:
  split: {handler: echo, map: pages, next: [ocr]}
  ocr: {handler: echo, max_parallel: 50, next: [collect]}
  collect: {handler: echo, join: all}
`)
	par.lazy = true
	par.submit(items(1000))
	split = readAll(par, "split")
	par.rdb.ConfigResetStat(par.ctx)
	par.run(split[0], pass)
	calls, usec = evalStats(t, par)
	t.Logf("map of 1,000 elements with max_parallel 50: %d call(s), %d µs in Redis", calls, usec)
	ocr = readAll(par, "ocr")
	eq(t, "queued items", len(ocr), 50)
	par.rdb.ConfigResetStat(par.ctx)
	for _, d := range ocr {
		par.run(d, pass)
	}
	calls, usec = evalStats(t, par)
	t.Logf("an element's complete releasing the next: %d calls, %.1f µs each in Redis", calls, float64(usec)/float64(calls))

	// For comparison: the same three steps without a map.
	plain := newHarness(t, b, `
name: plain
version: 1.0.0
steps:
  split: {handler: echo, next: [ocr]}
  ocr: {handler: echo, next: [collect]}
  collect: {handler: echo}
`)
	plain.lazy = true
	var pids []string
	for i := 0; i < 200; i++ {
		pids = append(pids, plain.submit(fmt.Sprintf(`{"page":%d}`, i)))
	}
	for _, d := range readAll(plain, "split") {
		plain.run(d, pass)
	}
	plain.rdb.ConfigResetStat(plain.ctx)
	for _, d := range readAll(plain, "ocr") {
		plain.run(d, pass)
	}
	calls, usec = evalStats(t, plain)
	t.Logf("for comparison, a plain step's complete (no map): %d calls, %.1f µs each in Redis", calls, float64(usec)/float64(calls))
	plain.drain(map[string]handlerFunc{})
	id = pids[0]
	mem, err = plain.c.TaskMemory(plain.ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("finished task of the same three steps without a map: %d bytes", mem)
}
