package dsat_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// BenchmarkSearchPage measures a page of 100 tasks of a task search on a
// partition whose index holds 1,000,000 tasks in six statuses (written
// straight into the index, with a hash only for the tasks the pages
// return), and reports the index's memory per task. ns/op is one page: the
// first of every status, and one of failed tasks a third of the way in
// (issue 18: "the page latency at 1,000,000 retained tasks").
func BenchmarkSearchPage(b *testing.B) {
	rdb, c, p := scriptBench(b)
	ctx := context.Background()
	const n, batch = 1_000_000, 10_000
	letters := []string{"p", "w", "r", "s", "f", "c"}
	statuses := []string{dsat.StatusPending, dsat.StatusScheduled, dsat.StatusRunning, dsat.StatusSucceeded, dsat.StatusFailed, dsat.StatusCancelled}
	part := p.Partition(0)
	ix := c.Keys().TaskIndex(part)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := make([]dsat.TaskID, n)
	before := usedMemory(b, rdb)
	for i := 0; i < n; i += batch {
		members := make([]any, 0, 2*batch)
		for j := i; j < i+batch; j++ {
			ids[j] = dsat.NewTaskID(part, t0.Add(time.Duration(j)*time.Millisecond))
			members = append(members, 0, letters[j%6]+ids[j].Unique)
		}
		if err := rdb.Do(ctx, append([]any{"ZADD", ix}, members...)...).Err(); err != nil {
			b.Fatal(err)
		}
	}
	perTask := float64(usedMemory(b, rdb)-before) / n
	// Hashes for the newest 1,000 tasks and 1,000 a third of the way in.
	pipe := rdb.Pipeline()
	for _, r := range [][2]int{{n - 1000, n}, {2 * n / 3, 2*n/3 + 1000}} {
		for j := r[0]; j < r[1]; j++ {
			at := strconv.FormatInt(ids[j].Time().UnixMilli(), 10)
			pipe.HSet(ctx, c.Keys().Task(part, ids[j].String()), "status", statuses[j%6], "created", at, "updated", at, "pv", "1.0.0")
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		b.Fatal(err)
	}
	deep := dsat.TaskQuery{Pipeline: p.Name, Status: []string{dsat.StatusFailed}, Limit: 100, Cursor: ids[2*n/3+700].String()}
	first := dsat.TaskQuery{Pipeline: p.Name, Limit: 100}
	for _, q := range []dsat.TaskQuery{first, deep} {
		if page, err := c.Search(ctx, q); err != nil || len(page.Items) != 100 || page.Next == "" {
			b.Fatalf("search %+v: %d items, next %q, %v", q, len(page.Items), page.Next, err)
		}
	}
	b.ResetTimer()
	i := 0
	for b.Loop() {
		q := first
		if i%2 == 1 {
			q = deep
		}
		i++
		if _, err := c.Search(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(perTask, "B/index_entry")
}
