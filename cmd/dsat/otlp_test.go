package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// otlpReceiver is an OTLP/HTTP (JSON) receiver for the tests: it keeps
// every span it is sent.
type otlpReceiver struct {
	url   string
	mu    sync.Mutex
	spans []otlpSpan
}

type otlpSpan struct {
	TraceID      string `json:"traceId"`
	SpanID       string `json:"spanId"`
	ParentSpanID string `json:"parentSpanId"`
	Name         string `json:"name"`
	Links        []struct {
		SpanID string `json:"spanId"`
	} `json:"links"`
}

func newOTLPReceiver(t *testing.T) *otlpReceiver {
	r := &otlpReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		var doc struct {
			ResourceSpans []struct {
				ScopeSpans []struct {
					Spans []otlpSpan `json:"spans"`
				} `json:"scopeSpans"`
			} `json:"resourceSpans"`
		}
		b, _ := io.ReadAll(req.Body)
		if req.URL.Path != "/v1/traces" || json.Unmarshal(b, &doc) != nil {
			http.Error(w, "bad export", http.StatusBadRequest)
			return
		}
		r.mu.Lock()
		for _, rs := range doc.ResourceSpans {
			for _, ss := range rs.ScopeSpans {
				r.spans = append(r.spans, ss.Spans...)
			}
		}
		r.mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

// waitForTaskTrace waits for one task's whole trace: a submission span of
// the pipeline with step spans as its children, among them a join whose
// span links two or more branches.
func (r *otlpReceiver) waitForTaskTrace(t *testing.T, pipeline string, limit time.Duration) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		r.mu.Lock()
		spans := append([]otlpSpan(nil), r.spans...)
		r.mu.Unlock()
		for _, sub := range spans {
			if sub.Name != "submit "+pipeline {
				continue
			}
			steps, links := 0, 0
			for _, s := range spans {
				if s.TraceID == sub.TraceID && s.ParentSpanID == sub.SpanID && strings.HasPrefix(s.Name, pipeline+"/") {
					steps++
					links = max(links, len(s.Links))
				}
			}
			if steps >= 5 && links >= 2 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no whole trace of a %s task among %d spans received", pipeline, len(spans))
		}
		time.Sleep(50 * time.Millisecond)
	}
}
