package httpapi

import (
	"net/http"
	"strings"
	"sync"
	"time"
)

// sseWriter writes server-sent events. Every write gets its own deadline
// (http.ResponseController), so a client that stops reading is cut without
// a whole-response timeout. Event names are dsat's own; everything a user
// controls goes inside the JSON of data:, which json.Marshal keeps on one
// line (it escapes CR and LF).
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

func startSSE(w http.ResponseWriter, timeout time.Duration) (*sseWriter, error) {
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("Connection", "keep-alive")
	h.Set("X-Accel-Buffering", "no")
	s := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: timeout}
	w.WriteHeader(http.StatusOK)
	return s, s.comment("dsat event stream")
}

func (s *sseWriter) write(text string) error {
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil {
		return err
	}
	if _, err := s.w.Write([]byte(text)); err != nil {
		return err
	}
	return s.rc.Flush()
}

// event writes one event; data must be one line (JSON).
func (s *sseWriter) event(id, name string, data []byte) error {
	var b strings.Builder
	if id != "" {
		b.WriteString("id: " + id + "\n")
	}
	b.WriteString("event: " + name + "\ndata: ")
	b.Write(data)
	b.WriteString("\n\n")
	return s.write(b.String())
}

func (s *sseWriter) comment(text string) error { return s.write(": " + text + "\n\n") }

// streamLimiter caps open streams in total and per client address.
type streamLimiter struct {
	mu        sync.Mutex
	total     int
	perClient map[string]int
	max, per  int
}

func newStreamLimiter(max, per int) *streamLimiter {
	return &streamLimiter{perClient: map[string]int{}, max: max, per: per}
}

// acquire returns 0 when the stream may open, else the status to answer.
func (l *streamLimiter) acquire(client string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.total >= l.max {
		return http.StatusServiceUnavailable
	}
	if l.perClient[client] >= l.per {
		return http.StatusTooManyRequests
	}
	l.total++
	l.perClient[client]++
	return 0
}

func (l *streamLimiter) release(client string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if l.perClient[client]--; l.perClient[client] <= 0 {
		delete(l.perClient, client)
	}
}
