package dsat_test

import (
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const searchYAML = `
name: mixed
version: 1.0.0
partitions: 3
steps:
  a: {handler: echo, retries: 0}
`

// searchDay gives each search harness its own month: task ids take the
// largest time the process's id generator has seen, so each harness's
// clock starts past every earlier one (and past the real clock).
var searchDay atomic.Int64

func newSearchHarness(t *testing.T, b redistest.Backend) *harness {
	t.Helper()
	h := newHarness(t, b, searchYAML)
	h.now = time.Date(2031, 1, 1, 0, 0, 0, 0, time.UTC).Add(time.Duration(searchDay.Add(1)) * 30 * 24 * time.Hour)
	return h
}

// searchAll pages through a search (page size limit) and returns the ids
// in order, failing on a repeated id.
func (h *harness) searchAll(q dsat.TaskQuery) []string {
	h.t.Helper()
	var ids []string
	for pages := 0; ; pages++ {
		page, err := h.c.Search(h.ctx, q)
		if err != nil {
			h.t.Fatalf("search %+v: %v", q, err)
		}
		for _, it := range page.Items {
			if slices.Contains(ids, it.ID) {
				h.t.Fatalf("search %+v: %s twice", q, it.ID)
			}
			ids = append(ids, it.ID)
		}
		if page.Next == "" {
			return ids
		}
		if pages > 1000 {
			h.t.Fatal("search does not end")
		}
		q.Cursor = page.Next
	}
}

// checkStatuses checks that a search by each status finds exactly the
// tasks with that status in their state, newest first, and that every
// task is in the index once.
func (h *harness) checkStatuses(ids []string) {
	h.t.Helper()
	want := map[string][]string{}
	for _, id := range ids {
		st := h.state(id).Status
		want[st] = append(want[st], id)
	}
	total := 0
	for _, st := range dsat.Statuses {
		got := h.searchAll(dsat.TaskQuery{Pipeline: "mixed", Status: []string{st}, Limit: 2})
		w := append([]string{}, want[st]...)
		slices.Sort(w)
		slices.Reverse(w)
		if !slices.Equal(got, w) {
			h.t.Errorf("status %s: search found %v, want %v", st, got, w)
		}
		total += len(got)
	}
	all := h.searchAll(dsat.TaskQuery{Pipeline: "mixed", Limit: 3})
	if len(all) != len(ids) || total != len(ids) {
		h.t.Errorf("every status: %d tasks, by status %d, want %d", len(all), total, len(ids))
	}
	for p := 0; p < h.p.Partitions; p++ {
		n := h.rdb.ZCard(h.ctx, h.c.Keys().TaskIndex(h.p.Partition(p))).Val()
		total -= int(n)
	}
	if total != 0 {
		h.t.Errorf("the indexes hold %d members more than the tasks", -total)
	}
}

func fails(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
	return nil, "", &dsat.Failure{Message: "boom"}
}

// TestTaskIndexFollowsStatus moves tasks through every status (submit,
// delayed, begin, late ACK, complete, fail, cancel, deadline, retry,
// delayed to running) and checks after each round that a search by status
// finds exactly the tasks in that status.
func TestTaskIndexFollowsStatus(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newSearchHarness(t, b)
		var ids []string
		submit := func(o dsat.SubmitOptions) string {
			s, err := h.c.Submit(h.ctx, "mixed", []byte(`{}`), o)
			if err != nil {
				t.Fatal(err)
			}
			ids = append(ids, s.ID)
			h.advance(time.Millisecond)
			return s.ID
		}
		for i := 0; i < 6; i++ {
			submit(dsat.SubmitOptions{})
		}
		delayed := submit(dsat.SubmitOptions{RunAt: h.now.Add(time.Minute)})
		overdue := submit(dsat.SubmitOptions{Deadline: h.now.Add(time.Second)})
		h.checkStatuses(ids)

		ds := h.read("a")
		byTask := map[string]dsat.Delivery{}
		for _, d := range ds {
			byTask[d.Task] = d
		}
		h.run(byTask[ids[0]], echo)  // succeeded
		h.run(byTask[ids[1]], fails) // failed
		if _, err := h.c.Begin(h.ctx, byTask[ids[2]]); err != nil {
			t.Fatal(err) // running
		}
		h.lazy = true
		h.run(byTask[ids[3]], echo) // pending to succeeded with a late ACK
		h.lazy = false
		if err := h.c.Cancel(h.ctx, ids[4], ""); err != nil {
			t.Fatal(err)
		}
		h.advance(2 * time.Second)
		for p := 0; p < h.p.Partitions; p++ {
			if _, _, err := h.c.CancelOverdue(h.ctx, h.p.Partition(p), 10); err != nil {
				t.Fatal(err)
			}
		}
		eq(t, "overdue", h.state(overdue).Status, dsat.StatusCancelled)
		h.checkStatuses(ids)

		if _, err := h.c.Retry(h.ctx, ids[1]); err != nil {
			t.Fatal(err)
		}
		h.advance(time.Minute)
		for p := 0; p < h.p.Partitions; p++ {
			if _, err := h.c.Promote(h.ctx, h.p.Partition(p), 10); err != nil {
				t.Fatal(err)
			}
		}
		for _, d := range h.read("a") {
			if d.Task == delayed {
				if _, err := h.c.Begin(h.ctx, d); err != nil {
					t.Fatal(err)
				}
			}
		}
		eq(t, "delayed", h.state(delayed).Status, dsat.StatusRunning)
		eq(t, "retried", h.state(ids[1]).Status, dsat.StatusRunning)
		h.checkStatuses(ids)
	})
}

// TestSearchPagingWhileTasksArrive pages through a pipeline's tasks while
// new ones keep arriving between pages: every task that existed at the
// first page is seen once, none twice, newest first, and since/until keep
// exactly the tasks created in their range.
func TestSearchPagingWhileTasksArrive(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newSearchHarness(t, b)
		var before []string
		for i := 0; i < 60; i++ {
			ids, err := h.c.SubmitBatch(h.ctx, "mixed", [][]byte{[]byte(`1`), []byte(`2`)})
			if err != nil {
				t.Fatal(err)
			}
			before = append(before, ids...)
			h.advance(time.Millisecond)
		}
		q := dsat.TaskQuery{Pipeline: "mixed", Limit: 7}
		var seen []string
		for {
			page, err := h.c.Search(h.ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range page.Items {
				seen = append(seen, it.ID)
			}
			if page.Next == "" {
				break
			}
			q.Cursor = page.Next
			if _, err := h.c.SubmitBatch(h.ctx, "mixed", [][]byte{[]byte(`3`), []byte(`4`), []byte(`5`)}); err != nil {
				t.Fatal(err)
			}
			h.advance(time.Millisecond)
		}
		want := append([]string{}, before...)
		slices.Sort(want)
		slices.Reverse(want)
		if !slices.Equal(seen, want) {
			t.Fatalf("paging while tasks arrive saw %d tasks, want the %d that existed (newest first)", len(seen), len(want))
		}

		// since/until: the tasks created in [the 11th ms, the 21st ms).
		t0 := h.state(before[0]).CreatedAt.Time
		got := h.searchAll(dsat.TaskQuery{Pipeline: "mixed", Since: t0.Add(10 * time.Millisecond), Until: t0.Add(20 * time.Millisecond), Limit: 3})
		w := slices.Clone(before[20:40])
		slices.Sort(w)
		slices.Reverse(w)
		if !slices.Equal(got, w) {
			t.Fatalf("since/until found %v, want %v", got, w)
		}
	})
}

// TestTaskIndexExpires: the time keepers' pruning (PruneIndex) removes
// the index members of tasks whose keys expired, only once they were
// created longer ago than the retention, keeps a task created that long ago
// but finished since, and goes on from its cursor; a member whose task
// expired is left out of a page before it is pruned.
func TestTaskIndexExpires(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newSearchHarness(t, b)
		long := h.submit(`{}`) // runs longer than the retention
		old := h.submit(`{}`)
		gone := h.submit(`{}`)
		var longD dsat.Delivery
		for _, d := range h.read("a") {
			if d.Task == long {
				longD = d
			} else {
				h.run(d, echo)
			}
		}
		member := func(id, letter string) bool {
			tid, _ := dsat.ParseTaskID(id)
			return h.rdb.ZScore(h.ctx, h.c.Keys().TaskIndex(tid.Partition), letter+tid.Unique).Err() == nil
		}
		if !member(old, "s") || !member(gone, "s") || !member(long, "p") {
			t.Fatal("the tasks are not in the index")
		}
		expire := func(id string) {
			tid, _ := dsat.ParseTaskID(id)
			h.rdb.Del(h.ctx, h.c.Keys().Task(tid.Partition, id), h.c.Keys().TaskLog(tid.Partition, id))
		}
		// A task whose keys expired before a prune: left out of the page.
		expire(gone)
		got := h.searchAll(dsat.TaskQuery{Pipeline: "mixed"})
		if !slices.Equal(got, []string{old, long}) {
			t.Fatalf("search found %v, want %s and %s", got, old, long)
		}
		prune := func() (removed int) {
			for p := 0; p < h.p.Partitions; p++ {
				cursor, calls := "", 0
				for {
					next, n, err := h.c.PruneIndex(h.ctx, h.p.Partition(p), cursor, 1)
					if err != nil {
						t.Fatal(err)
					}
					removed += n
					if cursor = next; cursor == "" {
						break
					}
					if calls++; calls > 10 {
						t.Fatalf("partition %d: the prune cursor does not end", p)
					}
				}
			}
			return removed
		}
		// Created within the retention: not a candidate yet.
		eq(t, "removed within the retention", prune(), 0)
		if !member(gone, "s") {
			t.Fatal("a member created within the retention was examined")
		}
		// Past the retention the long task ends, old's keys expire.
		h.advance(dsat.DefaultRetention + time.Second)
		h.run(longD, echo)
		expire(old)
		eq(t, "removed past the retention", prune(), 2)
		if member(old, "s") || member(gone, "s") {
			t.Fatal("members of expired tasks are still in the index")
		}
		if !member(long, "s") {
			t.Fatal("a task created before the retention but finished since lost its member")
		}
		eq(t, "removed again", prune(), 0)
		if got := h.searchAll(dsat.TaskQuery{Pipeline: "mixed"}); !slices.Equal(got, []string{long}) {
			t.Fatalf("search found %v, want %s", got, long)
		}
	})
}

func TestBulkActions(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newSearchHarness(t, b)
		var all []string
		for i := 0; i < 9; i++ {
			all = append(all, h.submit(`{}`))
			h.advance(time.Millisecond)
		}
		failing := map[string]bool{all[1]: true, all[4]: true, all[7]: true}
		for _, d := range h.read("a") {
			if failing[d.Task] {
				h.run(d, fails)
			} else if d.Task == all[0] || d.Task == all[2] {
				h.run(d, echo)
			}
		}
		// Retry the failed ones, two per call.
		q := dsat.TaskQuery{Pipeline: "mixed", Limit: 2}
		total := 0
		for {
			r, err := h.c.RetryFailed(h.ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			total += r.Count
			if r.Next == "" {
				break
			}
			q.Cursor = r.Next
		}
		eq(t, "retried", total, 3)
		for id := range failing {
			eq(t, "retried task", h.state(id).Status, dsat.StatusRunning)
		}
		r, err := h.c.RetryFailed(h.ctx, dsat.TaskQuery{Pipeline: "mixed"})
		if err != nil || r.Count != 0 || r.Next != "" {
			t.Fatalf("second retry: %+v %v, want count 0", r, err)
		}
		// Dead letters: the re-driven tasks fail again, then are retried from the list.
		for _, d := range h.read("a") {
			h.run(d, fails)
		}
		r, err = h.c.RetryDead(h.ctx, "mixed", "")
		if err != nil || r.Count != 3 {
			t.Fatalf("retry dead: %+v %v, want count 3", r, err)
		}
		if letters, _, _ := h.c.Dead(h.ctx, "mixed", "", 100); len(letters) != 0 {
			t.Fatalf("dead letters left: %v", letters)
		}
		r, _ = h.c.RetryDead(h.ctx, "mixed", "")
		eq(t, "second retry of the dead letters", r.Count, 0)

		// Cancel the pending ones, then everything not ended.
		r, err = h.c.CancelTasks(h.ctx, dsat.TaskQuery{Pipeline: "mixed", Status: []string{dsat.StatusPending}}, "")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "cancelled pending", r.Count, 4)
		r, _ = h.c.CancelTasks(h.ctx, dsat.TaskQuery{Pipeline: "mixed"}, "")
		eq(t, "cancelled running", r.Count, 3)
		r, _ = h.c.CancelTasks(h.ctx, dsat.TaskQuery{Pipeline: "mixed"}, "")
		eq(t, "second cancel", r.Count, 0)
		h.checkStatuses(all)
	})
}

func TestSearchRefusesBadQueries(t *testing.T) {
	h := newSearchHarness(t, redistest.Backends()[0])
	now := time.Now()
	for _, q := range []dsat.TaskQuery{
		{Limit: 1001},
		{Limit: -1},
		{Status: []string{"done"}},
		{Since: now, Until: now},
		{Cursor: "nope"},
	} {
		if _, err := h.c.Search(h.ctx, q); !errors.Is(err, dsat.ErrInvalidSearch) {
			t.Errorf("search %+v: %v, want ErrInvalidSearch", q, err)
		}
	}
	if _, err := h.c.Search(h.ctx, dsat.TaskQuery{Pipeline: "ghost"}); !errors.Is(err, dsat.ErrPipelineNotFound) {
		t.Errorf("unknown pipeline: %v", err)
	}
	if _, err := h.c.CancelTasks(h.ctx, dsat.TaskQuery{Pipeline: "mixed", Status: []string{dsat.StatusFailed}}, ""); !errors.Is(err, dsat.ErrInvalidSearch) {
		t.Errorf("cancel of failed tasks: %v", err)
	}
	if _, err := h.c.RetryFailed(h.ctx, dsat.TaskQuery{}); !errors.Is(err, dsat.ErrInvalidSearch) {
		t.Errorf("bulk retry without a pipeline: %v", err)
	}
}

// TestTaskIndexWithMaps: tasks of a pipeline with a map and a settled join
// end succeeded or failed in the index exactly as in their state, however
// their items end (the map's item scripts end tasks too).
func TestTaskIndexWithMaps(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(mapYAML, "settled"))
		var ids []string
		for _, p := range []string{`{"items":[1,2]}`, `{"items":[1,"bad"]}`, `{"items":[]}`, `{"items":["bad","bad"]}`} {
			ids = append(ids, h.submit(p))
		}
		h.drain(map[string]handlerFunc{"split": pass, "work": failOn(`"bad"`)})
		seen := map[string]bool{}
		for _, st := range dsat.Statuses {
			page, err := h.c.Search(h.ctx, dsat.TaskQuery{Pipeline: "mapper", Status: []string{st}})
			if err != nil {
				t.Fatal(err)
			}
			for _, it := range page.Items {
				eq(t, "status of "+it.ID, h.state(it.ID).Status, st)
				seen[it.ID] = true
			}
		}
		for _, id := range ids {
			if !seen[id] {
				t.Errorf("%s (%s) is in no status of the index", id, h.state(id).Status)
			}
		}
	})
}
