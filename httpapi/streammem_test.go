package httpapi

import (
	"fmt"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestMemoryPerOpenStream opens 200 live task feeds on one API from bare
// TCP connections (no client goroutines or buffers) and measures the heap
// and goroutines per open stream: the server's cost of a client.
func TestMemoryPerOpenStream(t *testing.T) {
	e := newEnv(t, redistest.Backends()[0], func(c *Config) { c.MaxStreamsPerClient = 1000 })
	id := e.submit(`{}`)
	const n = 200
	measure := func() (uint64, int) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return ms.HeapInuse, runtime.NumGoroutine()
	}
	heap0, g0 := measure()
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	var conns []net.Conn
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET /v1/tasks/%s/events HTTP/1.1\r\nHost: x\r\n\r\n", id)
		buf := make([]byte, 512)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if k, err := c.Read(buf); err != nil || !strings.HasPrefix(string(buf[:k]), "HTTP/1.1 200") {
			t.Fatalf("stream %d: %v %q", i, err, buf[:k])
		}
		conns = append(conns, c)
	}
	time.Sleep(100 * time.Millisecond)
	heap1, g1 := measure()
	per := float64(heap1-heap0) / n
	t.Logf("%d open streams: %.1f KiB of heap and %.1f goroutines per stream (goroutine stacks, about 8 KiB each, come on top)", n, per/1024, float64(g1-g0)/n)
	if per > 64<<10 {
		t.Fatalf("%.0f bytes per open stream", per)
	}
	for _, c := range conns {
		c.Close()
	}
}
