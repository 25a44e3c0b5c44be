//go:build integration

package integration

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestSearchTenThousand (issue 18): 10,000 tasks in every status on one
// real Redis and on the 3-master cluster (12 partitions): each status
// filter finds exactly the tasks whose state has that status; paging
// through every task while 1,000 more arrive sees each task that existed
// once, newest first; a bulk retry re-drives exactly the failed ones, once.
func TestSearchTenThousand(t *testing.T) {
	fullSuite(t)
	t.Run("redis", func(t *testing.T) {
		searchTenThousand(t, redistest.Start(t).Client(t), 3)
	})
	t.Run("cluster", func(t *testing.T) {
		searchTenThousand(t, startCluster(t).client(t), 12)
	})
}

func searchTenThousand(t *testing.T, rdb redis.UniversalClient, partitions int) {
	ctx := context.Background()
	p, err := dsat.ParsePipeline("mixed.yaml", []byte(fmt.Sprintf("name: mixed\nversion: 1.0.0\npartitions: %d\nsteps:\n  a: {handler: echo}\n", partitions)))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dsat.NewClient(rdb, dsat.Config{}, p)
	if err != nil {
		t.Fatal(err)
	}
	const n = 10_000
	batch := make([][]byte, 1000)
	for i := range batch {
		batch[i] = []byte(`{}`)
	}
	var ids []string
	const now = n * 4 / 5 // the rest are scheduled
	for len(ids) < n {
		var o dsat.SubmitOptions
		if len(ids) >= now {
			o.RunAt = time.Now().Add(time.Hour)
		}
		got, err := c.SubmitBatch(ctx, "mixed", batch, o)
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, got...)
	}
	// Every token of the entry step, by task; then a fifth of them each
	// begun, completed, failed for good, and a fifth cancelled.
	tokens := map[string]dsat.Delivery{}
	for i := 0; i < partitions; i++ {
		msgs, err := rdb.XRange(ctx, c.Keys().Step(p.Partition(i), "a"), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			env, err := dsat.ParseEnvelope(m.Values, 0)
			if err != nil {
				t.Fatal(err)
			}
			tokens[env.Task] = dsat.Delivery{Envelope: env, EntryID: m.ID, Worker: "w"}
		}
	}
	for i, id := range ids[:now] {
		d, ok := tokens[id]
		switch i % 5 {
		case 1:
			_, err = c.Begin(ctx, d)
		case 2:
			_, err = c.Complete(ctx, d, []byte(`{}`), "")
		case 3:
			_, _, err = c.Fail(ctx, d, dsat.Failure{Message: "broken", Final: true})
		case 4:
			err = c.Cancel(ctx, id, "")
		}
		if !ok && i%5 != 0 && i%5 != 4 {
			t.Fatalf("no token of %s", id)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	// What each task's state says.
	want := map[string][]string{}
	for _, id := range ids {
		st, err := c.Get(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		want[st.Status] = append(want[st.Status], id)
	}
	if len(want) != 6 {
		t.Fatalf("tasks in %d statuses, want all 6", len(want))
	}
	all := func(q dsat.TaskQuery, between func()) []string {
		t.Helper()
		var out []string
		seen := map[string]bool{}
		for {
			page, err := c.Search(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range page.Items {
				if seen[it.ID] {
					t.Fatalf("%s twice", it.ID)
				}
				seen[it.ID] = true
				out = append(out, it.ID)
			}
			if page.Next == "" {
				return out
			}
			q.Cursor = page.Next
			if between != nil {
				between()
			}
		}
	}
	newest := func(ids []string) []string {
		s := slices.Clone(ids)
		slices.SortFunc(s, func(a, b string) int { // the search's order: unique part, then the whole id
			if a[:26] != b[:26] {
				return strings.Compare(b[:26], a[:26])
			}
			return strings.Compare(b, a)
		})
		return s
	}
	start := time.Now()
	for st, w := range want {
		got := all(dsat.TaskQuery{Pipeline: "mixed", Status: []string{st}, Limit: 1000}, nil)
		if !slices.Equal(got, newest(w)) {
			t.Errorf("status %s: search found %d tasks, the states say %d (or not in order)", st, len(got), len(w))
		}
	}
	t.Logf("%d partitions: every status, pages of 1000: %v", partitions, time.Since(start))
	// Page through everything while 1,000 more tasks arrive, 50 per page.
	got := all(dsat.TaskQuery{Pipeline: "mixed", Limit: 500}, func() {
		if _, err := c.SubmitBatch(ctx, "mixed", batch[:50]); err != nil {
			t.Fatal(err)
		}
	})
	if !slices.Equal(got, newest(ids)) {
		t.Fatalf("paging while tasks arrive saw %d tasks, want the %d that existed, newest first", len(got), len(ids))
	}
	// Bulk retry: exactly the failed ones, once.
	total := 0
	q := dsat.TaskQuery{Pipeline: "mixed"}
	for {
		r, err := c.RetryFailed(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		total += r.Count
		if r.Next == "" {
			break
		}
		q.Cursor = r.Next
	}
	if total != len(want[dsat.StatusFailed]) {
		t.Fatalf("bulk retry re-drove %d, want the %d failed", total, len(want[dsat.StatusFailed]))
	}
	for _, id := range want[dsat.StatusFailed] {
		if st, _ := c.Get(ctx, id); st.Status != dsat.StatusRunning {
			t.Fatalf("%s after the bulk retry: %s", id, st.Status)
		}
	}
	if r, err := c.RetryFailed(ctx, dsat.TaskQuery{Pipeline: "mixed"}); err != nil || r.Count != 0 {
		t.Fatalf("second bulk retry: %+v %v", r, err)
	}
}
