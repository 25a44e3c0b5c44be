package httpapi

import (
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
// 500, and stores a task only when it answers 202.
func FuzzSubmitHandler(f *testing.F) {
	f.Add(`{"a":1}`, "application/json", "")
	f.Add(`{"a":`, "application/json", "k")
	f.Add(`[1,2,3] x`, "text/plain", "")
	f.Add("\xff\xfe", "application/json; charset=utf-8", "\n")
	f.Add(`"\u0000"`, "application/problem+json", strings.Repeat("k", 300))
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
		before := len(mr.Keys())
		w := httptest.NewRecorder()
		api.ServeHTTP(w, req)
		switch {
		case w.Code == http.StatusAccepted:
			if len(mr.Keys()) <= before {
				t.Fatalf("202 but nothing stored")
			}
		case w.Code == http.StatusOK, w.Code == http.StatusConflict:
		case w.Code >= 400 && w.Code < 500:
			if len(mr.Keys()) != before {
				t.Fatalf("%d but keys were stored", w.Code)
			}
			if w.Header().Get("Content-Type") != "application/problem+json" {
				t.Fatalf("%d without a problem body", w.Code)
			}
		default:
			t.Fatalf("status %d: %s", w.Code, w.Body)
		}
	})
}
