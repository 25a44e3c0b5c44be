package workers

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// rejections are the classes of stream entries a satellite refuses, each
// made from a valid token by one change. Every one names its task and
// token, so each must end the task (failed, with the reason) instead of
// leaving it pending forever; retry then re-drives it. Tokens are written
// in format 1.1 (a packed header h, dsat.Envelope.Fields); the last cases
// turn them into format 1.0 entries, as a version before 1.1 queued them.
var rejections = map[string]func(v map[string]any){
	"unknown field":           func(v map[string]any) { v["bogus"] = "1" },
	"missing field":           func(v map[string]any) { dropPart(v, "ts") },
	"format version":          func(v map[string]any) { setPart(v, "v", "9.0") },
	"pipeline version":        func(v map[string]any) { setPart(v, "pv", "not-a-version") },
	"incompatible pipeline":   func(v map[string]any) { setPart(v, "pv", "9.0.0") },
	"content type":            func(v map[string]any) { v["ct"] = "" },
	"payload over the limit":  func(v map[string]any) { v["payload"] = `"` + strings.Repeat("x", 200) + `"` },
	"timestamp":               func(v map[string]any) { setPart(v, "ts", "-5") },
	"traceparent":             func(v map[string]any) { v["trace"] = strings.Repeat("f", 129) },
	"attempt":                 func(v map[string]any) { setPart(v, "attempt", "0") },
	"step of another stream":  func(v map[string]any) { setPart(v, "step", "b") },
	"step name":               func(v map[string]any) { setPart(v, "step", "no such\nstep") },
	"attempt and payload bad": func(v map[string]any) { setPart(v, "attempt", "x"); v["payload"] = "{" },
	"1.0: format version": func(v map[string]any) {
		toLegacy(v)
		v["v"] = "9.0"
	},
	"1.0: step of another stream": func(v map[string]any) {
		toLegacy(v)
		v["step"] = "b"
	},
}

// headerParts are the parts of a 1.1 header, in order.
var headerParts = []string{"v", "task", "step", "token", "attempt", "pv", "ts"}

// setPart replaces one part of the entry's header.
func setPart(v map[string]any, name, val string) {
	parts := strings.Split(v["h"].(string), "|")
	parts[slices.Index(headerParts, name)] = val
	v["h"] = strings.Join(parts, "|")
}

// dropPart removes one part of the entry's header.
func dropPart(v map[string]any, name string) {
	parts := strings.Split(v["h"].(string), "|")
	v["h"] = strings.Join(slices.Delete(parts, slices.Index(headerParts, name), slices.Index(headerParts, name)+1), "|")
}

// toLegacy turns a 1.1 entry into the 1.0 entry of the same token.
func toLegacy(v map[string]any) {
	for i, p := range strings.Split(v["h"].(string), "|") {
		v[headerParts[i]] = p
	}
	delete(v, "h")
	v["v"], v["ct"] = "1.0", dsat.DefaultContentType
}

// TestRejectedEntriesEndTheirTask drives every class of rejection through a
// satellite: the entry goes to the dead letters, the token dies with the
// reason, the task ends failed with DEAD, and a retry completes it.
func TestRejectedEntriesEndTheirTask(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: rej
version: 1.0.0
steps:
  a: {handler: echo, next: [b]}
  b: {handler: echo}
`)
		m := NewMux()
		RegisterBuiltins(m, 0)
		part := b.p.Partition(0)
		stream := b.c.Keys().Step(part, "a")
		ids := map[string]string{}
		for name, change := range rejections {
			id := b.submit(1, `{"n":1}`)[0]
			ids[name] = id
			// Replace the task's token entry with the changed one.
			msgs, err := b.rdb.XRange(b.ctx, stream, "-", "+").Result()
			if err != nil || len(msgs) != 1 {
				t.Fatalf("%s: stream holds %d entries (%v)", name, len(msgs), err)
			}
			v := msgs[0].Values
			change(v)
			if err := b.rdb.XDel(b.ctx, stream, msgs[0].ID).Err(); err != nil {
				t.Fatal(err)
			}
			if err := b.rdb.XAdd(b.ctx, &redis.XAddArgs{Stream: stream, Values: v}).Err(); err != nil {
				t.Fatal(err)
			}
			// Keep the next task's entry apart: move this one aside.
			if err := b.rdb.Rename(b.ctx, stream, stream+":"+name).Err(); err != nil {
				t.Fatal(err)
			}
		}
		for name := range rejections {
			all, err := b.rdb.XRange(b.ctx, stream+":"+name, "-", "+").Result()
			if err != nil || len(all) != 1 {
				t.Fatalf("%s: %v %v", name, all, err)
			}
			if err := b.rdb.XAdd(b.ctx, &redis.XAddArgs{Stream: stream, Values: all[0].Values}).Err(); err != nil {
				t.Fatal(err)
			}
			b.rdb.Del(b.ctx, stream+":"+name)
		}
		cfg := b.fast("s1")
		cfg.MaxPayload = 128
		b.start(m, cfg)
		var list []string
		for _, id := range ids {
			list = append(list, id)
		}
		states := b.wait(list, 10*time.Second)
		for i, id := range list {
			name := ""
			for n, x := range ids {
				if x == id {
					name = n
				}
			}
			st := states[i]
			if st.Status != dsat.StatusFailed || !strings.Contains(st.Error, "invalid envelope") {
				t.Errorf("%s: status %s error %q, want failed with the reason", name, st.Status, st.Error)
			}
			if c := b.eventCounts(id); c["DEAD"] != 1 || c["ERROR"] != 1 {
				t.Errorf("%s: events %v, want one ERROR and one DEAD", name, c)
			}
		}
		dead, _, err := b.c.Dead(b.ctx, "rej", "", 100)
		if err != nil || len(dead) != len(rejections) {
			t.Fatalf("dead letters: %d (%v), want %d", len(dead), err, len(rejections))
		}
		// Retry re-drives each (from the hash's own, valid, fields); the
		// payload over the limit can only fail again, but it ends.
		for name, id := range ids {
			if _, err := b.c.Retry(b.ctx, id); err != nil {
				t.Fatalf("%s: retry: %v", name, err)
			}
		}
		for i, st := range b.wait(list, 10*time.Second) {
			want := dsat.StatusSucceeded
			if list[i] == ids["payload over the limit"] {
				want = dsat.StatusFailed
			}
			if st.Status != want {
				t.Errorf("task %s after retry: %s (%s), want %s", list[i], st.Status, st.Error, want)
			}
		}
		b.streamsEmpty()
	})
}

// TestJoinOverTheLimitEndsTheTask: a join whose merged input is larger than
// the payload limit ends the task failed with the reason, instead of
// queueing a token no satellite accepts.
func TestJoinOverTheLimitEndsTheTask(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, be redistest.Backend) {
		b := setup(t, be, `
name: big
version: 1.0.0
steps:
  a: {handler: echo, next: [l, r]}
  l: {handler: echo, next: [j]}
  r: {handler: echo, next: [j]}
  j: {handler: echo, join: true}
`)
		m := NewMux()
		RegisterBuiltins(m, 0)
		cfg := b.fast("s1")
		cfg.MaxPayload = 1000
		b.start(m, cfg)
		ids := b.submit(1, `"`+strings.Repeat("x", 600)+`"`)
		st := b.wait(ids, 10*time.Second)[0]
		if st.Status != dsat.StatusFailed || !strings.Contains(st.Error, "larger than the limit") {
			t.Fatalf("status %s error %q", st.Status, st.Error)
		}
	})
}
