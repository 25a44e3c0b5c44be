package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/dsat-dev/dsat/dsat"
)

// FuzzSubmitHandler: whatever the body, content type and idempotency key,
// the submit route answers 202, 200, 4xx or 503 with a JSON body, never a
// 500, stores the task it answers 202 for, and sends nothing to Redis when
// it refuses the input. Each run costs a few map lookups beside the
// handler (no listing of keys), so CI can fuzz by count.
func FuzzSubmitHandler(f *testing.F) {
	f.Add(`{"a":1}`, "application/json", "")
	f.Add(`{"a":`, "application/json", "k")
	f.Add(`[1,2,3] x`, "text/plain", "")
	f.Add("\xff\xfe", "application/json; charset=utf-8", "\n")
	f.Add(`"\u0000"`, "application/problem+json", strings.Repeat("k", 300))
	f.Add("{\"a\":\"\xe9\"}", "application/json", "")
	f.Add(strings.Repeat("[", 513)+strings.Repeat("]", 513), "application/json", "")
	mr := miniredis.NewMiniRedis()
	if err := mr.Start(); err != nil {
		f.Fatal(err)
	}
	defer mr.Close()
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	defer rdb.Close()
	p, _ := dsat.ParsePipeline("demo.yaml", []byte(testYAML))
	c, _ := dsat.NewClient(rdb, dsat.Config{MaxPayload: 4096}, p)
	api := NewRouter(Config{Client: c, Logger: zerolog.Nop()})
	f.Fuzz(func(t *testing.T, body, ctype, key string) {
		req := httptest.NewRequest("POST", "/v1/pipelines/demo/tasks", strings.NewReader(body))
		req.Header.Set("Content-Type", ctype)
		if key != "" && !strings.ContainsAny(key, "\r\n\x00") {
			req.Header.Set("Idempotency-Key", key)
		}
		before := mr.CommandCount()
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		switch {
		case w.Code == http.StatusAccepted:
			var s submitted
			if err := json.Unmarshal(w.Body.Bytes(), &s); err != nil {
				t.Fatalf("202 with body %s", w.Body)
			}
			tid, err := dsat.ParseTaskID(s.ID)
			if err != nil || !mr.Exists(c.Keys().Task(tid.Partition, s.ID)) {
				t.Fatalf("202 but task %q is not stored (%v)", s.ID, err)
			}
		case w.Code == http.StatusOK, w.Code == http.StatusConflict:
		case w.Code >= 400 && w.Code < 500:
			if n := mr.CommandCount() - before; n != 0 {
				t.Fatalf("%d but %d Redis commands ran", w.Code, n)
			}
			if w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d without a problem body", w.Code)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
