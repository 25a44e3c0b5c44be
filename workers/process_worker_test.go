package workers

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"
)

// testWorkerEnv names the mode in which the test binary runs as a process
// worker (TestMain): "serve" answers each request as its payload orders
// (testOrder); "die" exits 1 at once; "stubborn" serves, then ignores the
// end of its stdin.
const testWorkerEnv = "DSAT_TEST_PROCESS_WORKER"

// testOrder is the payload of a request to the test worker. Each request
// is served in a goroutine of its own, so answers may overtake.
type testOrder struct {
	Echo     any    `json:"echo"`
	SleepMS  int    `json:"sleep_ms"`
	Crash    int    `json:"crash"` // exit 1 while the attempt is at most this
	Hang     int    `json:"hang"`  // never answer while the attempt is at most this
	Error    string `json:"error"`
	Retry    *bool  `json:"retry"`
	Junk     bool   `json:"junk"` // a line that is not JSON
	Big      int    `json:"big"`  // an output string of this many bytes
	Stderr   string `json:"stderr"`
	Progress bool   `json:"progress"`
	WaitFor  *int   `json:"wait_for"` // answer once the request with that echo is answered
	Hold     int    `json:"hold"`     // answer once the process holds this many requests
}

func testWorker(mode string) int {
	if mode == "die" {
		fmt.Fprintln(os.Stderr, "cannot load the model")
		return 1
	}
	var mu sync.Mutex
	answered := sync.NewCond(&mu)
	seq, held, maxHeld := 0, 0, 0 // answers sent; requests held now, at most
	done := map[any]bool{}        // echoes answered
	send := func(v any) {
		b, _ := json.Marshal(v)
		mu.Lock()
		defer mu.Unlock()
		_, _ = os.Stdout.Write(append(b, '\n'))
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var wg sync.WaitGroup
	for sc.Scan() {
		var req struct {
			ID, Task, Pipeline, Step string
			Traceparent              string
			Attempt                  int
			Payload                  json.RawMessage
			Settings                 map[string]any
		}
		if err := json.Unmarshal(sc.Bytes(), &req); err != nil {
			fmt.Fprintln(os.Stderr, "bad request:", err)
			return 3
		}
		var o testOrder
		_ = json.Unmarshal(req.Payload, &o)
		mu.Lock()
		held++
		maxHeld = max(maxHeld, held)
		answered.Broadcast()
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			mu.Lock()
			for o.WaitFor != nil && !done[float64(*o.WaitFor)] || maxHeld < o.Hold {
				answered.Wait()
			}
			mu.Unlock()
			if o.Stderr != "" {
				fmt.Fprintln(os.Stderr, o.Stderr)
			}
			if o.Progress {
				send(map[string]any{"id": req.ID, "progress": 0.5, "message": "half way"})
			}
			time.Sleep(time.Duration(o.SleepMS) * time.Millisecond)
			switch {
			case req.Attempt <= o.Crash:
				fmt.Fprintln(os.Stderr, "crashing on purpose")
				os.Exit(1)
			case req.Attempt <= o.Hang:
				time.Sleep(time.Hour)
			case o.Junk:
				mu.Lock()
				fmt.Println("hello, this is not JSON")
				mu.Unlock()
			case o.Error != "":
				a := map[string]any{"id": req.ID, "error": o.Error}
				if o.Retry != nil {
					a["retry"] = *o.Retry
				}
				send(a)
			default:
				out := map[string]any{"echo": o.Echo, "pid": os.Getpid(), "attempt": req.Attempt, "task": req.Task,
					"pipeline": req.Pipeline, "step": req.Step, "settings": req.Settings, "payload": req.Payload,
					"env_step": os.Getenv("DSAT_STEP"), "env_leak": os.Getenv("DSAT_REDIS_URL"), "traceparent": req.Traceparent}
				if o.Big > 0 {
					out["big"] = strings.Repeat("x", o.Big)
				}
				mu.Lock()
				seq++
				out["seq"], out["max_held"] = seq, maxHeld
				held--
				if o.Echo != nil {
					done[o.Echo] = true
				}
				answered.Broadcast()
				mu.Unlock()
				send(map[string]any{"id": req.ID, "output": out})
			}
		}()
	}
	wg.Wait()
	if mode == "stubborn" {
		time.Sleep(time.Hour)
	}
	return 0
}
