package httpapi

import (
	"net/url"
	"slices"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestSearchAndBulkHTTP pages GET /v1/tasks by status, then retries the
// failed tasks and cancels the pending ones in bulk: each bulk call twice,
// the second counting 0.
func TestSearchAndBulkHTTP(t *testing.T) {
	t.Parallel()
	e := newEnv(t, redistest.Backends()[0])
	var ids []string
	for i := 0; i < 5; i++ {
		ids = append(ids, e.submit(`{}`))
	}
	failToken(t, e, ids[1], "a")
	failToken(t, e, ids[3], "a")
	search := func(query string) []string {
		t.Helper()
		var got []string
		cursor := ""
		for pages := 0; pages < 10; pages++ {
			q := query
			if cursor != "" {
				q += "&cursor=" + url.QueryEscape(cursor)
			}
			r := e.do("GET", "/v1/tasks?"+q, "", "")
			if r.status != 200 {
				t.Fatalf("GET /v1/tasks?%s: %d %s", q, r.status, r.raw)
			}
			for _, it := range r.body["items"].([]any) {
				got = append(got, it.(map[string]any)["id"].(string))
			}
			next, _ := r.body["next"].(string)
			if next == "" {
				return got
			}
			cursor = next
		}
		t.Fatal("paging does not end")
		return nil
	}
	newest := func(ids ...string) []string {
		s := slices.Clone(ids)
		slices.Sort(s)
		slices.Reverse(s)
		return s
	}
	if got := search("pipeline=demo&status=failed&limit=1"); !slices.Equal(got, newest(ids[1], ids[3])) {
		t.Fatalf("failed tasks: %v", got)
	}
	if got := search("status=pending&limit=2"); !slices.Equal(got, newest(ids[0], ids[2], ids[4])) {
		t.Fatalf("pending tasks: %v", got)
	}
	if got := search("pipeline=demo"); !slices.Equal(got, newest(ids...)) {
		t.Fatalf("every task: %v", got)
	}
	for _, bad := range []string{"limit=1001", "limit=0", "since=yesterday", "status=done", "cursor=x", "pipeline=nope", "color=red"} {
		if r := e.do("GET", "/v1/tasks?"+bad, "", ""); r.status/100 != 4 {
			t.Errorf("GET /v1/tasks?%s: %d, want a 4xx", bad, r.status)
		}
	}

	bulk := func(path string, want int) {
		t.Helper()
		r := e.do("POST", path, "", "")
		if r.status != 200 || r.body["count"] != float64(want) || r.body["next"] != nil {
			t.Fatalf("POST %s: %d %s, want count %d and next null", path, r.status, r.raw, want)
		}
	}
	bulk("/v1/pipelines/demo/retry-failed", 2)
	bulk("/v1/pipelines/demo/retry-failed", 0)
	bulk("/v1/pipelines/demo/cancel?status=pending", 3) // the retried ones are running
	bulk("/v1/pipelines/demo/cancel?status=pending", 0)
	bulk("/v1/pipelines/demo/cancel", 2)
	bulk("/v1/pipelines/demo/cancel", 0)
	for _, id := range ids {
		if r := e.do("GET", "/v1/tasks/"+id, "", ""); r.body["status"] != dsat.StatusCancelled {
			t.Errorf("%s: %v after the bulk cancel", id, r.body["status"])
		}
	}
	if r := e.do("POST", "/v1/pipelines/demo/cancel?status=failed", "", ""); r.status != 400 {
		t.Errorf("cancel of failed tasks: %d, want 400", r.status)
	}
	if r := e.do("POST", "/v1/pipelines/nope/retry-failed", "", ""); r.status != 404 {
		t.Errorf("retry-failed of an unknown pipeline: %d, want 404", r.status)
	}
}
