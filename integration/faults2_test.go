//go:build integration

package integration

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
)

// TestFaultLostReplies (fault 3): client connections are killed every
// 200ms and the satellites' read timeout is a few milliseconds, so
// go-redis retries scripts whose reply was lost: state still changes once.
func TestFaultLostReplies(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	addr := rdb.Options().Addr
	r := newRig(t, rdb, "redis://"+addr+"?read_timeout=4ms&max_retries=10&min_retry_backoff=1ms&max_retry_backoff=20ms", loadYAML(1))
	r.worker("w1")
	r.worker("w2")
	r.submit(2000)
	killer := redis.NewClient(&redis.Options{Addr: addr})
	defer killer.Close()
	ctx, stop := context.WithCancel(context.Background())
	kills := 0
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			time.Sleep(200 * time.Millisecond)
			// SKIPME yes: the killer's own connection stays.
			if n, err := killer.Do(ctx, "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes").Int(); err == nil {
				kills += n
			}
		}
	}()
	r.waitFinal(120 * time.Second)
	stop()
	<-done
	t.Logf("%d client connections killed while 2000 tasks ran", kills)
	if kills == 0 {
		t.Fatal("no connection was killed")
	}
	r.check(nil)
}

// TestFaultRedisCrash (fault 4): SIGKILL redis-server under load and
// restart it on the same AOF (appendfsync always): every task that got a
// 202 completes; the API answers 503 (not 500) and /readyz is 503 while
// Redis is down; satellites and API reconnect by themselves.
func TestFaultRedisCrash(t *testing.T) {
	fullSuite(t)
	r, missing := redisCrash(t, "always")
	if missing != 0 {
		t.Fatalf("%d accepted tasks are gone after a crash with appendfsync always", missing)
	}
	r.check(nil)
}

// TestFaultRedisCrashEverysec: the same crash with appendfsync everysec.
// Redis may lose up to a second of writes: tasks accepted in that second
// can be gone (counted and logged here), and state changes of that second
// are redone (handlers run again) — never applied twice: the invariants
// hold for every task that is still there.
func TestFaultRedisCrashEverysec(t *testing.T) {
	fullSuite(t)
	r, missing := redisCrash(t, "everysec")
	t.Logf("appendfsync everysec: %d of %d accepted tasks were lost with the last second of writes", missing, len(r.ids)+missing)
	r.check(nil)
}

// redisCrash runs the crash fault and returns the rig (with the tasks that
// still exist) and how many accepted tasks are gone.
func redisCrash(t *testing.T, fsync string) (*rig, int) {
	srv, rdb := standalone(t, fsync)
	r := newRig(t, rdb, "redis://"+srv.Addr, loadYAML(1))
	_, api := r.serve()
	r.worker("w1")
	r.worker("w2")
	var mu sync.Mutex
	statuses := map[int]int{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	hc := &http.Client{Timeout: 5 * time.Second}
	for c := 0; c < 4; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				body := fmt.Sprintf(`[{"kind":"a","c":%d,"i":%d},{"kind":"b","c":%d,"i":%d}]`, c, i, c, i)
				res, err := hc.Post(api+"/v1/pipelines/load/batch", "application/json", strings.NewReader(body))
				if err != nil {
					time.Sleep(20 * time.Millisecond)
					continue
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				mu.Lock()
				statuses[res.StatusCode]++
				if res.StatusCode == http.StatusAccepted {
					var out struct{ IDs []string }
					_ = jsonUnmarshal(b, &out)
					r.ids = append(r.ids, out.IDs...)
				}
				mu.Unlock()
				if res.StatusCode != http.StatusAccepted {
					time.Sleep(50 * time.Millisecond)
				}
			}
		}(c)
	}
	time.Sleep(1500 * time.Millisecond)
	srv.Stop() // SIGKILL
	time.Sleep(300 * time.Millisecond)
	res, err := hc.Get(api + "/readyz")
	if err != nil || res.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("/readyz while Redis is down: %v %v", err, res)
	}
	res.Body.Close()
	time.Sleep(1200 * time.Millisecond)
	srv.Restart(t)
	time.Sleep(1500 * time.Millisecond)
	close(stop)
	wg.Wait()
	mu.Lock()
	t.Logf("HTTP statuses during the run: %v; %d tasks accepted", statuses, len(r.ids))
	if statuses[http.StatusInternalServerError] > 0 {
		t.Fatalf("the API answered 500 during the outage: %v", statuses)
	}
	if statuses[http.StatusServiceUnavailable] == 0 {
		t.Fatalf("no 503 during the outage: %v", statuses)
	}
	mu.Unlock()
	var kept []string
	for _, id := range r.ids {
		if _, err := r.c.Get(r.ctx, id); err == nil {
			kept = append(kept, id)
		}
	}
	missing := len(r.ids) - len(kept)
	r.ids = kept
	r.waitFinal(120 * time.Second)
	return r, missing
}

// TestFaultRedisFlushed (fault 5): Redis comes back empty; satellites
// recreate their consumer groups with backoff (bounded command rate) and
// new work flows.
func TestFaultRedisFlushed(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, loadYAML(1))
	r.worker("w1")
	r.submit(200)
	r.waitFinal(60 * time.Second)
	if err := rdb.FlushAll(r.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	// A stream without its group (as after a restart without persistence
	// that kept a stray entry): XREADGROUP answers NOGROUP at once.
	for _, s := range r.p.Order {
		rdb.XAdd(r.ctx, &redis.XAddArgs{Stream: r.c.Keys().Step(r.p.Partition(0), s), Values: []any{"junk", "1"}})
	}
	before := totalCalls(t, rdb)
	time.Sleep(3 * time.Second)
	rate := float64(totalCalls(t, rdb)-before) / 3
	t.Logf("command rate after the flush: %.0f/s", rate)
	if rate > 500 {
		t.Fatalf("%.0f commands/s after a flush: a hot loop", rate)
	}
	r.ids = nil
	r.submit(500)
	r.waitFinal(60 * time.Second)
	r.check(nil)
}

func totalCalls(t *testing.T, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "stats").Result()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "total_commands_processed:"); ok {
			var n int64
			fmt.Sscan(v, &n)
			return n
		}
	}
	return 0
}

// TestFaultRedisStalls (fault 6): CLIENT PAUSE 3000 WRITE and DEBUG SLEEP 2
// under load: nothing is reclaimed early, nothing is lost.
func TestFaultRedisStalls(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, loadYAML(1))
	w1, w2 := r.worker("w1"), r.worker("w2")
	r.submit(2000)
	time.Sleep(300 * time.Millisecond)
	if err := rdb.Do(r.ctx, "CLIENT", "PAUSE", "3000", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3500 * time.Millisecond)
	if err := rdb.Do(r.ctx, "DEBUG", "SLEEP", "2").Err(); err != nil {
		t.Fatal(err)
	}
	r.waitFinal(120 * time.Second)
	r.check(nil)
	for _, w := range []*dsatProc{w1, w2} {
		if !w.alive() {
			t.Fatalf("%s died during the stall", w.name)
		}
	}
}

// TestFaultForcedDuplicateDelivery (fault 7): running tokens force-claimed
// by another consumer (XCLAIM ... FORCE): the state changes once.
func TestFaultForcedDuplicateDelivery(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, strings.Replace(loadYAML(1), "ms: 3", "ms: 150", 1))
	r.worker("w1")
	r.worker("w2")
	r.submit(2000)
	key := r.c.Keys().Step(r.p.Partition(0), "work")
	stolen := 0
	deadline := time.Now().Add(4 * time.Second)
	for time.Now().Before(deadline) {
		pend, err := rdb.XPendingExt(r.ctx, &redis.XPendingExtArgs{Stream: key, Group: "work", Start: "-", End: "+", Count: 20}).Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pend {
			other := "w2"
			if p.Consumer == "w2" {
				other = "w1"
			}
			if n, _ := rdb.Do(r.ctx, "XCLAIM", key, "work", other, "0", p.ID, "FORCE", "JUSTID").Slice(); len(n) > 0 {
				stolen++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%d running tokens force-claimed by the other satellite", stolen)
	if stolen == 0 {
		t.Fatal("nothing was force-claimed")
	}
	r.waitFinal(120 * time.Second)
	r.check(nil)
}

// TestFaultPoisonAndBadMessages (faults 8, 9 and 10): a handler that always
// panics dead-letters its tokens after their attempts while other tasks
// flow; a pending entry deleted with XDEL becomes a "payload lost" dead
// letter; malformed entries become one dead letter each; the satellite
// stays up.
func TestFaultPoisonAndBadMessages(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	yaml := strings.Replace(loadYAML(1), "  pb:     {handler: echo,", "  pb:     {handler: fail, with: {panic: true, attempts: 100}, retries: 1, backoff: {initial: 10ms, max: 10ms},", 1)
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, yaml)
	part := r.p.Partition(0)
	intake := r.c.Keys().Step(part, "intake")
	someTask := dsat.NewTaskID(part, time.Now()).String()
	valid := func(over map[string]any) []any {
		f := map[string]any{"task": someTask, "step": "intake", "token": "99", "attempt": "1", "v": "1.0",
			"pv": "1.0.0", "ct": "application/json", "payload": "{}", "ts": "1700000000000"}
		for k, v := range over {
			if v == nil {
				delete(f, k)
			} else {
				f[k] = v
			}
		}
		var out []any
		for k, v := range f {
			out = append(out, k, v)
		}
		return out
	}
	bad := map[string][]any{
		"missing fields":       valid(map[string]any{"payload": nil, "ts": nil}),
		"bad numbers":          valid(map[string]any{"attempt": "one"}),
		"unknown envelope":     valid(map[string]any{"v": "9.0"}),
		"incompatible version": valid(map[string]any{"pv": "2.0.0"}),
		"huge payload":         valid(map[string]any{"payload": string(bytes.Repeat([]byte("x"), 20<<20))}),
	}
	// Payload lost: a token taken by a consumer that then vanished, and
	// its entry deleted while pending.
	if err := rdb.XGroupCreateMkStream(r.ctx, intake, "intake", "0").Err(); err != nil {
		t.Fatal(err)
	}
	lostID, err := rdb.XAdd(r.ctx, &redis.XAddArgs{Stream: intake, Values: valid(nil)}).Result()
	if err != nil {
		t.Fatal(err)
	}
	if err := rdb.XReadGroup(r.ctx, &redis.XReadGroupArgs{Group: "intake", Consumer: "ghost", Streams: []string{intake, ">"}, Count: 1, Block: -1}).Err(); err != nil {
		t.Fatal(err)
	}
	rdb.XDel(r.ctx, intake, lostID)
	r.submit(300)
	for name, vals := range bad {
		if err := rdb.XAdd(r.ctx, &redis.XAddArgs{Stream: intake, Values: vals}).Err(); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
	}
	w := r.worker("w1")
	r.waitFinal(120 * time.Second)
	deadline := time.Now().Add(10 * time.Second) // the reclaimer finds it after the visibility timeout
	for {
		d, _, _ := r.c.Dead(r.ctx, "load", "", 1000)
		found := false
		for _, x := range d {
			found = found || (x.Raw != "" && strings.Contains(x.Reason, "payload lost"))
		}
		if found {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no payload-lost dead letter for the deleted pending entry%s", r.logTails())
		}
		time.Sleep(200 * time.Millisecond)
	}
	poisoned := map[string]bool{}
	for i, id := range r.ids {
		if i%3 == 0 { // kind b: routed to the panicking step
			poisoned[id] = true
		}
	}
	rep := r.check(poisoned)
	if rep.failed != len(poisoned) {
		t.Fatalf("%d tasks failed, want %d", rep.failed, len(poisoned))
	}
	dead, _, err := r.c.Dead(r.ctx, "load", "", 1000)
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, d := range dead {
		switch {
		case d.Task != "" && strings.Contains(d.Reason, "panic") && d.Attempts == 2:
			reasons["panic"]++
		case strings.Contains(d.Reason, "invalid envelope"):
			reasons["envelope"]++
		case strings.Contains(d.Reason, "payload lost"):
			reasons["lost"]++
		}
	}
	t.Logf("dead letters: %v (of %d)", reasons, len(dead))
	if reasons["panic"] != len(poisoned) || reasons["envelope"] != len(bad) || reasons["lost"] != 1 {
		t.Fatalf("dead letters %v, want %d panics, %d invalid envelopes, 1 payload lost", reasons, len(poisoned), len(bad))
	}
	if !w.alive() {
		t.Fatal("the satellite died")
	}
}

// jsonUnmarshal keeps encoding/json out of the hot test code above.
var jsonUnmarshal = func(b []byte, v any) error { return jsonDecode(b, v) }
