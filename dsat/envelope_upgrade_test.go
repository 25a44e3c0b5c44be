package dsat_test

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// legacyValues is the token of d as a version before envelope format 1.1
// queued it: one field per value, as field/value pairs in that version's
// order.
func legacyValues(d dsat.Delivery, attempt int, ts int64) []any {
	f := []any{"task", d.Task, "step", d.Step, "token", d.Token, "attempt", strconv.Itoa(attempt), "v", "1.0",
		"pv", d.PV.String(), "ct", d.CT, "payload", string(d.Payload), "ts", strconv.FormatInt(ts, 10)}
	if d.Trace != "" {
		f = append(f, "trace", d.Trace)
	}
	return f
}

// TestUpgradeReadsLegacyTokens: tokens queued by a version before envelope
// format 1.1 — an entry in a step stream, a member of the retry set — are
// not lost after an upgrade: they are read, run and completed, and the
// tokens they lead to are written in the current format.
func TestUpgradeReadsLegacyTokens(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		part := h.p.Partition(0)
		streamA := h.c.Keys().Step(part, "a")
		idA, idB := h.submit(`{"n":"a"}`), h.submit(`{"n":"b"}`)

		// Today's entries: the packed header and the payload, nothing else.
		msgs, err := h.rdb.XRange(h.ctx, streamA, "-", "+").Result()
		if err != nil || len(msgs) != 2 {
			t.Fatalf("stream a: %v %v", msgs, err)
		}
		for _, m := range msgs {
			var keys []string
			for k := range m.Values {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			eq(t, "fields of a token", keys, []string{"h", "payload"})
		}
		// idA's entry as the old version queued it.
		env, err := dsat.ParseEnvelope(msgs[0].Values, 0)
		if err != nil || env.Task != idA {
			t.Fatalf("entry of %s: %+v %v", idA, env, err)
		}
		h.rdb.XDel(h.ctx, streamA, msgs[0].ID)
		d := dsat.Delivery{Envelope: env}
		if err := h.rdb.XAdd(h.ctx, &redis.XAddArgs{Stream: streamA, Values: legacyValues(d, 1, env.TS)}).Err(); err != nil {
			t.Fatal(err)
		}

		formats := map[string]string{}
		seen := func(d dsat.Delivery) { formats[d.Task+"/"+d.Step+"/"+strconv.Itoa(d.Attempt)] = d.V.API() }
		for _, d := range h.read("a") {
			seen(d)
			h.run(d, echo)
		}
		for _, d := range h.read("b") {
			seen(d)
			h.run(d, func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
				if d.Task == idB {
					return nil, "", &dsat.Failure{Message: "once"}
				}
				return echo(d)
			})
		}
		// idB's retry waits in the retry set, in today's format; replace it
		// by the old version's member.
		retry := h.c.Keys().Retry(part)
		zs, err := h.rdb.ZRangeWithScores(h.ctx, retry, 0, -1).Result()
		if err != nil || len(zs) != 1 {
			t.Fatalf("retry set: %v %v", zs, err)
		}
		var member []string
		if err := json.Unmarshal([]byte(zs[0].Member.(string)), &member); err != nil || len(member) != 4 || member[0] != "h" || member[2] != "payload" {
			t.Fatalf("retry member %v (%v), want [h, <header>, payload, <payload>]", zs[0].Member, err)
		}
		renv, err := dsat.ParseEnvelope(map[string]any{member[0]: member[1], member[2]: member[3]}, 0)
		if err != nil || renv.Task != idB || renv.Step != "b" || renv.Attempt != 2 {
			t.Fatalf("retry member: %+v %v", renv, err)
		}
		old, _ := json.Marshal(legacyValues(dsat.Delivery{Envelope: renv}, 2, renv.TS))
		h.rdb.ZRem(h.ctx, retry, zs[0].Member)
		if err := h.rdb.ZAdd(h.ctx, retry, redis.Z{Score: zs[0].Score, Member: string(old)}).Err(); err != nil {
			t.Fatal(err)
		}

		h.drain(map[string]handlerFunc{
			"b": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) { seen(d); return echo(d) },
			"c": func(d dsat.Delivery) ([]byte, string, *dsat.Failure) { seen(d); return echo(d) },
		})
		eq(t, "formats read", fmt.Sprint(formats), fmt.Sprint(map[string]string{
			idA + "/a/1": "1.0", idA + "/b/1": "1.1", idA + "/c/1": "1.1",
			idB + "/a/1": "1.1", idB + "/b/1": "1.1", idB + "/b/2": "1.0", idB + "/c/1": "1.1",
		}))
		for _, id := range []string{idA, idB} {
			eq(t, "status of "+id, h.state(id).Status, dsat.StatusSucceeded)
			h.checkInvariants(id)
		}
		h.streamsEmpty()
	})
}

// TestTokensCarryTraceAndContentType: a task's traceparent, and a content
// type other than the default (both may hold "|", so they are not packed
// into the header), reach every token the scripts write: entry, next,
// retried.
func TestTokensCarryTraceAndContentType(t *testing.T) {
	t.Parallel()
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, linearYAML)
		// A later traceparent version may append fields, "|" included.
		trace := "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-a|b"
		s, err := h.c.Submit(h.ctx, h.p.Name, []byte(`{}`), dsat.SubmitOptions{Trace: trace})
		if err != nil {
			t.Fatal(err)
		}
		// Submit only writes the default content type; another one in the
		// task's state is carried by the tokens the scripts write next.
		const ct = `text/x-y; q="a|b"`
		h.rdb.HSet(h.ctx, h.c.Keys().Task(h.p.Partition(0), s.ID), "ct", ct)
		var got []string
		check := func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			got = append(got, fmt.Sprintf("%s/%d %s %s", d.Step, d.Attempt, d.CT, d.Trace))
			if d.Step == "b" && d.Attempt == 1 {
				return nil, "", &dsat.Failure{Message: "once"}
			}
			return echo(d)
		}
		h.drain(map[string]handlerFunc{"a": check, "b": check, "c": check})
		eq(t, "tokens", got, []string{
			"a/1 application/json " + trace, "b/1 " + ct + " " + trace, "b/2 " + ct + " " + trace, "c/1 " + ct + " " + trace})
		eq(t, "status", h.state(s.ID).Status, dsat.StatusSucceeded)
		h.streamsEmpty()
	})
}
