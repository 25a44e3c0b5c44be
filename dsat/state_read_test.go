package dsat

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/internal/redistest"
)

const bigMapYAML = `
name: bigmap
version: 1.0.0
steps:
  split: {handler: echo, map: items, max_items: 100000, next: [work]}
  work: {handler: echo, next: [collect]}
  collect: {handler: echo, join: all}
`

// TestTaskFoldRepeatedFields: a field that comes again in a later page
// (HSCAN returns a field at least once) counts its item once; only each
// step's latest token record is kept, in any order.
func TestTaskFoldRepeatedFields(t *testing.T) {
	t.Parallel()
	p, err := ParsePipeline("p.yaml", []byte(bigMapYAML))
	if err != nil {
		t.Fatal(err)
	}
	f := newTaskFold(p)
	f.add([]string{"status", "running", "k:1", "d|1|split|s1", "k:7", "r|1|work|s1", "k:3", "d|1|work|s2", "mi:4", "x"})
	f.add([]string{"k:7", "d|1|work|s1", "k:5", "x|2|work|s2", "k:3", "d|1|work|s2", "s:work:err", "boom"})
	if got := fmt.Sprint(f.items); got != "map[work:map[dead:1 done:1 running:1]]" {
		t.Fatalf("items %s", got)
	}
	if got := fmt.Sprint(f.h); got != "map[k:1:d|1|split|s1 k:7:d|1|work|s1 s:work:err:boom status:running]" {
		t.Fatalf("fields kept %s", got)
	}
}

// TestTaskFoldKeepsTheState: the fields the fold keeps give the state the
// whole hash gives, for a hash with every kind of field the state shows
// (and some it does not): a field stateFromHash starts to read must be
// kept by the fold too.
func TestTaskFoldKeepsTheState(t *testing.T) {
	t.Parallel()
	h := map[string]string{
		"pipeline": "p", "pv": "1.0.0", "status": "running", "created": "1700000000000", "updated": "1700000001000",
		"seq": "9", "error": "e", "run_at": "1700000002000", "deadline": "1700000003000", "pr": "high",
		"parent": "06fa1bqk0c8m3pz4tq2hn6v1a8.q.1.0.0|s|3|1",
		"k:1":    "d|1|a|w1", "k:2": "r|2|b|child:06fa1bqk0c8m3pz4tq2hn6v1a9.c.1.0.0", "k:3": "w|3|c|w2", "k:4": "d|1|c|w2",
		"pk:j": "2", "p:b": "0.5|1700000001500|half", "s:c:err": "boom",
		"mi:1": "x", "j:j:a": "{}", "ntok": "4", "live": "2",
	}
	f := newTaskFold(nil)
	var kv []string
	for k, v := range h {
		kv = append(kv, k, v)
	}
	f.add(kv)
	want, _ := json.Marshal(stateFromHash("id", h))
	got, _ := json.Marshal(stateFromHash("id", f.h))
	if string(got) != string(want) {
		t.Fatalf("state from the fold:\n%s\nfrom the hash:\n%s", got, want)
	}
}

// TestParkedJoinStateIsStable: a join step with parked tokens and the
// record of an earlier run (a join re-parked after a retry) shows waiting
// with no token, attempt or worker, in whatever order the fields come.
func TestParkedJoinStateIsStable(t *testing.T) {
	t.Parallel()
	for range 50 {
		st := stateFromHash("id", map[string]string{"status": "running", "k:3": "d|2|j|s1", "pk:j": "1", "k:1": "d|1|a|s1"})
		if got := fmt.Sprintf("%+v", st.Steps["j"]); got != "{State:waiting Token: Attempts:0 Worker: Error: Progress:<nil> Child: Items:map[]}" {
			t.Fatalf("join step %s", got)
		}
	}
}

// TestGetReadsABigMapInPages: a map's task hash of 9,000 token records
// (and per-item fields the state does not show) is read 100 fields at a
// time on real Redis (INFO commandstats counts the HSCANs), and the state
// is the one read whole: item counts, the latest token of each step.
func TestGetReadsABigMapInPages(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		ctx := context.Background()
		rdb, _ := be.New(t)
		const n = 9000
		c, id := bigMapTask(t, rdb, 100000, n)
		c.taskPage = 1 << 20
		whole, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		before := hscans(t, c, be.Real)
		c.taskPage = 100
		paged, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if be.Real {
			if calls := hscans(t, c, true) - before; calls < n/100 {
				t.Fatalf("%d HSCAN calls for %d fields 100 at a time", calls, 2*n)
			}
		}
		want := fmt.Sprintf("map[dead:%d done:%d queued:%d]", n/3, n/3, n/3)
		for name, st := range map[string]*TaskState{"whole": whole, "paged": paged} {
			w := st.Steps["work"]
			if got := fmt.Sprint(w.Items); got != want {
				t.Errorf("%s: work items %s, want %s", name, got, want)
			}
			if w.Token != strconv.Itoa(n+1) || w.State != "queued" {
				t.Errorf("%s: work's latest token %s %s, want %d queued", name, w.Token, w.State, n+1)
			}
			if st.Status != StatusPending || st.Steps["split"].Token != "1" {
				t.Errorf("%s: status %s, split's token %q", name, st.Status, st.Steps["split"].Token)
			}
		}
	})
}

var hscanCalls = regexp.MustCompile(`cmdstat_hscan:calls=(\d+)`)

// hscans is how many HSCANs the server has run (0 on miniredis, which
// has no command stats).
func hscans(t *testing.T, c *Client, real bool) int {
	t.Helper()
	if !real {
		return 0
	}
	info, err := c.rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		t.Fatal(err)
	}
	m := hscanCalls.FindStringSubmatch(info)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// BenchmarkGetBigMap reads the state of a task whose map has 520,000
// items (1,040,000 hash fields) on real Redis; it reports the reader's
// largest heap in use and Redis's time per HSCAN (README, "Maps").
func BenchmarkGetBigMap(b *testing.B) {
	ctx := context.Background()
	rdb := redistest.Start(b).Client(b)
	c, id := bigMapTask(b, rdb, 1000000, 520000)
	var peak uint64
	for b.Loop() {
		if _, err := c.Get(ctx, id); err != nil {
			b.Fatal(err)
		}
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		peak = max(peak, ms.HeapInuse)
	}
	b.ReportMetric(float64(peak)/1e6, "MB-heap")
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	if m := regexp.MustCompile(`cmdstat_hscan:calls=\d+,usec=\d+,usec_per_call=([\d.]+)`).FindStringSubmatch(info); m != nil {
		us, _ := strconv.ParseFloat(m[1], 64)
		b.ReportMetric(us, "redis-µs/hscan")
	}
}

// bigMapTask submits a task of bigMapYAML (max_items: maxItems) and
// writes n token records of its mapped step into its hash, numbered from
// 2 (the entry token is 1): done, queued, dead in turn, each with a
// per-item field the state does not show.
func bigMapTask(tb testing.TB, rdb redis.UniversalClient, maxItems, n int) (*Client, string) {
	tb.Helper()
	ctx := context.Background()
	p, err := ParsePipeline("p.yaml", []byte(strings.Replace(bigMapYAML, "100000", strconv.Itoa(maxItems), 1)))
	if err != nil {
		tb.Fatal(err)
	}
	c, err := NewClient(rdb, Config{}, p)
	if err != nil {
		tb.Fatal(err)
	}
	sub, err := c.Submit(ctx, "bigmap", []byte(`{"items":[]}`), SubmitOptions{})
	if err != nil {
		tb.Fatal(err)
	}
	tid, _ := ParseTaskID(sub.ID)
	for lo := 2; lo < n+2; lo += 10000 {
		var fields []any
		for i := lo; i < min(lo+10000, n+2); i++ {
			fields = append(fields, "k:"+strconv.Itoa(i), []string{"d", "q", "x"}[i%3]+"|1|work|s1", "mi:"+strconv.Itoa(i), "x")
		}
		if err := rdb.HSet(ctx, c.keys.Task(tid.Partition, sub.ID), fields...).Err(); err != nil {
			tb.Fatal(err)
		}
	}
	return c, sub.ID
}
