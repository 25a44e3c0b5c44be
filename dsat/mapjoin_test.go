package dsat_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

const mapYAML = `
name: mapper
version: 1.0.0
steps:
  split: {handler: echo, map: items, max_items: 5, next: [work]}
  work: {handler: echo, retries: 0, next: [collect]}
  collect: {handler: echo, join: %s}
`

// pass outputs the token's input as it is.
func pass(d dsat.Delivery) ([]byte, string, *dsat.Failure) { return d.Payload, "", nil }

// wrap outputs {"v": input}.
func wrap(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
	return []byte(`{"v":` + string(d.Payload) + `}`), "", nil
}

// failOn fails the items whose input is one of bad.
func failOn(bad ...string) handlerFunc {
	return func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
		for _, b := range bad {
			if string(d.Payload) == b {
				return nil, "", &dsat.Failure{Message: "boom " + b}
			}
		}
		return wrap(d)
	}
}

// joinInput returns the input the join step got (its only token's
// payload, as collect passes it through).
func joinInput(t *testing.T, h *harness, id string) string {
	t.Helper()
	st := h.state(id)
	eq(t, "status", st.Status, dsat.StatusSucceeded)
	return string(st.Result)
}

// TestMapJoinOrder: one token per item, each its own END; the join gets
// the outputs as a bare array in item order whatever order they ended in,
// and items keep their exact JSON (no float rounding).
func TestMapJoinOrder(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(mapYAML, "all"))
		id := h.submit(`{"items":[1,"two",{"a":12345678901234567},[3],null]}`)
		for _, d := range h.read("split") {
			h.run(d, pass)
		}
		ws := h.read("work")
		eq(t, "item tokens", len(ws), 5)
		for i := len(ws) - 1; i >= 0; i-- { // backwards
			h.run(ws[i], wrap)
		}
		h.drain(map[string]handlerFunc{"collect": pass})
		eq(t, "join input", joinInput(t, h, id), `[{"v":1},{"v":"two"},{"v":{"a":12345678901234567}},{"v":[3]},{"v":null}]`)
		evs := h.events(id)
		ends, items := 0, map[string]bool{}
		for _, e := range evs {
			if e.Event == dsat.EventEnd && e.Step == "work" {
				ends++
			}
			if e.Event == dsat.EventSend && e.Step == "split" {
				var d struct{ Item *int }
				if err := json.Unmarshal(e.Detail, &d); err != nil || d.Item == nil {
					t.Fatalf("SEND of the map without an item: %s", e.Detail)
				}
				items[fmt.Sprint(*d.Item)] = true
			}
		}
		eq(t, "END per item", ends, 5)
		eq(t, "items sent", len(items), 5)
		eq(t, "work items", fmt.Sprint(h.state(id).Steps["work"].Items), "map[done:5]")
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

func TestMapEmptyAndTooMany(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(mapYAML, "all"))
		empty := h.submit(`{"items":[]}`)
		over := h.submit(`{"items":[1,2,3,4,5,6]}`)
		notArray := h.submit(`{"items":{"a":1}}`)
		h.drain(map[string]handlerFunc{"split": pass, "collect": pass})
		eq(t, "empty map: the join's input", joinInput(t, h, empty), `[]`)
		eq(t, "no item run", h.runs["work"], 0)
		h.checkInvariants(empty)
		for _, id := range []string{over, notArray} {
			st := h.state(id)
			eq(t, "status", st.Status, dsat.StatusFailed)
			eq(t, "split state", st.Steps["split"].State, "dead")
			eq(t, "attempts: final at once", st.Steps["split"].Attempts, 1)
			h.checkInvariants(id)
		}
		if e := h.state(over).Steps["split"].Error; !strings.Contains(e, "holds 6 items, more than max_items 5") {
			t.Fatalf("error %q does not say why", e)
		}
		if e := h.state(notArray).Steps["split"].Error; !strings.Contains(e, `"items" is not an array`) {
			t.Fatalf("error %q does not say why", e)
		}
		h.streamsEmpty()
	})
}

// TestMapMaxParallel: never more than max_parallel items of a task are
// queued or running; each item leaving releases the next, in order.
func TestMapMaxParallel(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, `
name: mp
version: 1.0.0
steps:
  split: {handler: echo, map: items, next: [work]}
  work: {handler: echo, max_parallel: 2, next: [collect]}
  collect: {handler: echo, join: all}
`)
		id := h.submit(`{"items":[0,1,2,3,4,5,6]}`)
		for _, d := range h.read("split") {
			h.run(d, pass)
		}
		seen := 0
		var held []dsat.Delivery // read and not finished: queued or running
		for round := 0; round < 20; round++ {
			held = append(held, h.read("work")...)
			if len(held) == 0 {
				break
			}
			if len(held) > 2 {
				t.Fatalf("round %d: %d items at once, max_parallel 2", round, len(held))
			}
			if st := h.state(id).Steps["work"].Items; st["queued"]+st["running"] > 2 {
				t.Fatalf("round %d: items %v", round, st)
			}
			h.run(held[len(held)-1], wrap) // one at a time, the later first
			held = held[:len(held)-1]
			seen++
		}
		eq(t, "items run", seen, 7)
		h.drain(map[string]handlerFunc{"collect": pass})
		eq(t, "join input", joinInput(t, h, id), `[{"v":0},{"v":1},{"v":2},{"v":3},{"v":4},{"v":5},{"v":6}]`)
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

// TestMapSettled: items that die are errors of the join, which fires
// with null in their place; the task goes on and succeeds.
func TestMapSettled(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(mapYAML, "settled"))
		id := h.submit(`{"items":[0,1,2,3,4]}`)
		h.drain(map[string]handlerFunc{"split": pass, "work": failOn("2", "4"), "collect": pass})
		eq(t, "join input", joinInput(t, h, id), `{"outputs":[{"v":0},{"v":1},null,{"v":3},null],"errors":{"2":"boom 2","4":"boom 4"}}`)
		st := h.state(id)
		eq(t, "work items", fmt.Sprint(st.Steps["work"].Items), "map[dead:2 done:3]")
		eq(t, "task error", st.Error, "")
		dl, _, err := h.c.Dead(h.ctx, "mapper", "", 10)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "dead letters", len(dl), 2)
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

const branchesYAML = `
name: branches
version: 1.0.0
steps:
  a: {handler: echo, next: [b, c]}
  b: {handler: echo, retries: 0, next: [j]}
  c: {handler: echo, retries: 0, next: [j]}
  j: {handler: echo, join: %s}
`

// TestJoinSettled: a dead branch no longer blocks the join; its error is
// in the join's input and the task succeeds. Both dead: the join fires
// with errors only.
func TestJoinSettled(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(branchesYAML, "settled"))
		boom := func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			return nil, "", &dsat.Failure{Message: "boom"}
		}
		one := h.submit(`{}`)
		h.drain(map[string]handlerFunc{"a": pass, "b": wrap, "c": boom, "j": pass})
		eq(t, "join input", joinInput(t, h, one), `{"outputs":{"b":{"v":{}}},"errors":{"c":"boom"}}`)
		h.checkInvariants(one)
		both := h.submit(`{}`)
		h.drain(map[string]handlerFunc{"a": pass, "b": boom, "c": boom, "j": pass})
		eq(t, "join input", joinInput(t, h, both), `{"outputs":{},"errors":{"b":"boom","c":"boom"}}`)
		h.checkInvariants(both)
		h.streamsEmpty()
	})
}

// anyRace submits a task of branchesYAML, runs a, reads c's token (not
// run) and runs b with f: the task and c's deliveries.
func anyRace(h *harness, f handlerFunc) (string, []dsat.Delivery) {
	id := h.submit(`{}`)
	for _, d := range h.read("a") {
		h.run(d, pass)
	}
	cs := h.read("c")
	for _, d := range h.read("b") {
		h.run(d, f)
	}
	return id, cs
}

// TestJoinAny: the first arrival fires the join once and cancels the
// other branch: its queued token is dropped, never run.
func TestJoinAny(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(branchesYAML, "any"))
		id, cs := anyRace(h, wrap)
		st := h.state(id)
		eq(t, "c cancelled", st.Steps["c"].State, "cancelled")
		for _, d := range cs {
			o, err := h.c.Begin(h.ctx, d)
			if err != nil || o != dsat.Dropped {
				t.Fatalf("begin of a cancelled token: %v %v", o, err)
			}
			// A handler that ran anyway: its result changes nothing.
			if o, err := h.c.Complete(h.ctx, d, []byte(`{}`), ""); err != nil || o == dsat.Applied {
				t.Fatalf("complete of a cancelled token: %v %v", o, err)
			}
			if o, _, err := h.c.Fail(h.ctx, d, dsat.Failure{Message: "task cancelled"}); err != nil || o == dsat.Applied {
				t.Fatalf("fail of a cancelled token: %v %v", o, err)
			}
		}
		h.drain(map[string]handlerFunc{"j": pass})
		eq(t, "join input", joinInput(t, h, id), `{"b":{"v":{}}}`)
		eq(t, "c never ran", h.runs["c"], 0)
		eq(t, "j ran once", h.runs["j"], 1)
		sends := 0
		for _, e := range h.events(id) {
			if e.Event == dsat.EventSend && strings.Contains(string(e.Detail), `"to":"j"`) {
				sends++
				if !strings.Contains(string(e.Detail), `"cancelled":["3"]`) {
					t.Fatalf("SEND to the join does not name the cancelled token: %s", e.Detail)
				}
			}
		}
		eq(t, "SEND to j", sends, 1)
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

func TestMapJoinValidation(t *testing.T) {
	for _, tc := range []struct{ name, yaml, want string }{
		{"map on route_by", `
  s: {handler: echo, map: items, route_by: items, routes: {x: [w]}}
  w: {handler: echo, next: [j]}
  j: {handler: echo, join: all}`, `test.yaml:4: step "s": field "map": field "items" is also the step's route_by`},
		{"any after map", `
  s: {handler: echo, map: items, next: [w]}
  w: {handler: echo, next: [j]}
  j: {handler: echo, join: any}`, `test.yaml:6: step "j": field "join": join: any cannot follow the map of step "s"`},
		{"join after map with other preds", `
  s: {handler: echo, map: items, next: [w, o]}
  w: {handler: echo, next: [j]}
  o: {handler: echo, next: [j]}
  j: {handler: echo, join: all}`, `test.yaml:4: step "s": field "next": a map step sends its items to exactly one next step, has 2`},
		{"join after map with other preds 2", `
  e: {handler: echo, next: [s, o]}
  s: {handler: echo, map: items, next: [w]}
  w: {handler: echo, next: [j]}
  o: {handler: echo, next: [j]}
  j: {handler: echo, join: all}`, `test.yaml:8: step "j": field "join": the join after the map of step "s" may have only that one predecessor "w", has [w o]`},
		{"max_parallel without map", `
  s: {handler: echo, next: [w]}
  w: {handler: echo, max_parallel: 3}`, `test.yaml:5: step "w": field "max_parallel": needs a map upstream`},
		{"max_items zero", `
  s: {handler: echo, map: items, max_items: 0, next: [w]}
  w: {handler: echo, next: [j]}
  j: {handler: echo, join: all}`, `test.yaml:4: step "s": field "max_items": must be a whole number from 1 to 1000000`},
		{"unknown policy", `
  s: {handler: echo, next: [w, x]}
  w: {handler: echo, next: [j]}
  x: {handler: echo, next: [j]}
  j: {handler: echo, join: first}`, `test.yaml:7: step "j": field "join": must be all, settled or any`},
		{"map without join", `
  s: {handler: echo, map: items, next: [w]}
  w: {handler: echo}`, `test.yaml:5: step "w": field "next": the items of the map of step "s" must end at a join`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dsat.ParsePipeline("test.yaml", []byte("name: v\nversion: 1.0.0\nsteps:"+tc.yaml+"\n"))
			var ve dsat.ValidationErrors
			if !errors.As(err, &ve) {
				t.Fatalf("want validation errors, got %v", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("errors:\n%v\nwant one containing %q", err, tc.want)
			}
		})
	}
	// Each of these gives exactly one error, which says what to fix.
	for _, tc := range []struct{ name, yaml, want string }{
		{"empty map", `
  s: {handler: echo, map: "", next: [w]}
  w: {handler: echo}`, `test.yaml:4: step "s": field "map": must name the output field that holds the array, got an empty string`},
		{"map into its join", `
  s: {handler: echo, map: items, next: [j]}
  j: {handler: echo, join: all}`, `test.yaml:5: step "j": field "join": the items of the map of step "s" must run a step before the join: add one between them (s: next: [work]; work: next: [j])`},
		{"max_parallel on the second chain step", `
  s: {handler: echo, map: items, next: [w1]}
  w1: {handler: echo, next: [w2]}
  w2: {handler: echo, next: [j], max_parallel: 3}
  j: {handler: echo, join: settled}`, `test.yaml:6: step "w2": field "max_parallel": goes on the first step of the items of the map of step "s", "w1": it bounds the items in the whole chain`},
		{"map with routes", `
  s: {handler: echo, map: items, route_by: kind, routes: {x: [w], default: [w]}}
  w: {handler: echo, next: [j]}
  j: {handler: echo, join: all}`, `test.yaml:4: step "s": field "map": a map sends every item to its one next step: it cannot have routes`},
		{"map not a string", `
  s: {handler: echo, map: [items], next: [w]}
  w: {handler: echo, next: [j]}
  j: {handler: echo, join: all}`, `test.yaml:4: step "s": field "map": must be a string`},
		{"routes in the chain", `
  s: {handler: echo, map: items, next: [w]}
  w: {handler: echo, route_by: k, routes: {x: [j], default: [j]}}
  j: {handler: echo, join: all}`, `test.yaml:5: step "w": field "next": runs the items of the map of step "s": it needs exactly one next step (no fan-out, no routes)`},
		{"bad join value after a map", `
  s: {handler: echo, map: items, next: [w]}
  w: {handler: echo, next: [j]}
  j: {handler: echo, join: ALL}`, `test.yaml:6: step "j": field "join": must be all, settled or any (true means all), got "ALL"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := dsat.ParsePipeline("test.yaml", []byte("name: v\nversion: 1.0.0\nsteps:"+tc.yaml+"\n"))
			if err == nil || err.Error() != tc.want {
				t.Fatalf("errors:\n%v\nwant only %q", err, tc.want)
			}
		})
	}
	// join: true is join: all.
	p, err := dsat.ParsePipeline("test.yaml", []byte(fmt.Sprintf(branchesYAML, "true")))
	if err != nil || p.Steps["j"].JoinPolicy != dsat.JoinAll {
		t.Fatalf("join: true: %v %+v", err, p)
	}
}

// TestMapSettledHundred: 3 of 100 items always fail (each after its
// retries), with max_parallel: the join fires once with 97 outputs and 3
// errors, in element order, and the task succeeds.
func TestMapSettledHundred(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, `
name: hundred
version: 1.0.0
steps:
  split: {handler: echo, map: items, next: [work]}
  work: {handler: echo, retries: 2, max_parallel: 10, next: [collect]}
  collect: {handler: echo, join: settled}
`)
		items := make([]string, 100)
		for i := range items {
			items[i] = fmt.Sprint(i)
		}
		id := h.submit(`{"items":[` + strings.Join(items, ",") + `]}`)
		h.drain(map[string]handlerFunc{"split": pass, "work": failOn("7", "50", "99"), "collect": pass})
		var in struct {
			Outputs []json.RawMessage `json:"outputs"`
			Errors  map[string]string `json:"errors"`
		}
		if err := json.Unmarshal([]byte(joinInput(t, h, id)), &in); err != nil {
			t.Fatal(err)
		}
		eq(t, "outputs", len(in.Outputs), 100)
		for i, o := range in.Outputs {
			want := fmt.Sprintf(`{"v":%d}`, i)
			if i == 7 || i == 50 || i == 99 {
				want = "null"
			}
			eq(t, fmt.Sprintf("output %d", i), string(o), want)
		}
		eq(t, "errors", fmt.Sprint(in.Errors), "map[50:boom 50 7:boom 7 99:boom 99]")
		eq(t, "runs of work", h.runs["work"], 97+3*3)
		eq(t, "collect ran once", h.runs["collect"], 1)
		eq(t, "work items", fmt.Sprint(h.state(id).Steps["work"].Items), "map[dead:3 done:97]")
		// (checkInvariants re-reads the history after every event: too slow
		// for 100 items in the fast suite; the seq check is what matters.)
		errs := 0
		for i, e := range h.events(id) {
			eq(t, "seq", e.Seq, int64(i+1))
			if e.Step == "work" && (e.Event == dsat.EventError || e.Event == dsat.EventRetry) {
				var d struct{ Item *int }
				if err := json.Unmarshal(e.Detail, &d); err != nil || d.Item == nil || (*d.Item != 7 && *d.Item != 50 && *d.Item != 99) {
					t.Fatalf("%s of an item without its index: %s", e.Event, e.Detail)
				}
				errs++
			}
		}
		eq(t, "ERROR and RETRY events of items", errs, 3*3+3*2)
		h.streamsEmpty()
	})
}

// TestMapChainSettledCancel: items run a chain of two steps with
// max_parallel; an item dying in the second step still releases the next
// and counts for the settled join. A task cancelled mid-map leaves no
// token behind and its join never fires.
func TestMapChainSettledCancel(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, `
name: chain
version: 1.0.0
steps:
  split: {handler: echo, map: items, next: [a]}
  a: {handler: echo, max_parallel: 2, next: [b]}
  b: {handler: echo, retries: 0, next: [j]}
  j: {handler: echo, join: settled}
`)
		id := h.submit(`{"items":[0,1,2,3,4]}`)
		h.drain(map[string]handlerFunc{"split": pass, "a": wrap, "b": failOn(`{"v":1}`, `{"v":4}`), "j": pass})
		eq(t, "join input", joinInput(t, h, id), `{"outputs":[{"v":{"v":0}},null,{"v":{"v":2}},{"v":{"v":3}},null],"errors":{"1":"boom {\"v\":1}","4":"boom {\"v\":4}"}}`)
		st := h.state(id)
		eq(t, "a items", fmt.Sprint(st.Steps["a"].Items), "map[done:5]")
		eq(t, "b items", fmt.Sprint(st.Steps["b"].Items), "map[dead:2 done:3]")
		h.checkInvariants(id)

		gone := h.submit(`{"items":[0,1,2,3,4]}`)
		for _, d := range h.read("split") {
			h.run(d, pass)
		}
		first := h.read("a")
		eq(t, "released", len(first), 2)
		h.run(first[0], wrap)
		if err := h.c.Cancel(h.ctx, gone, "test"); err != nil {
			t.Fatal(err)
		}
		h.run(first[1], wrap) // read before the cancel: dropped
		h.drain(map[string]handlerFunc{"a": wrap, "b": wrap, "j": pass})
		eq(t, "status", h.state(gone).Status, dsat.StatusCancelled)
		// Items that had not ended show cancelled, not queued or running.
		gst := h.state(gone)
		eq(t, "a items of the cancelled task", fmt.Sprint(gst.Steps["a"].Items), "map[cancelled:1 done:1]")
		eq(t, "b items of the cancelled task", fmt.Sprint(gst.Steps["b"].Items), "map[cancelled:1]")
		eq(t, "b of the cancelled task", gst.Steps["b"].State, "cancelled")
		eq(t, "j ran for the first task only", h.runs["j"], 1)
		h.streamsEmpty()
	})
}

// TestJoinAnyAfterADeadBranch: a branch that died before the first
// arrival no longer fails the task once the join fires.
func TestJoinAnyAfterADeadBranch(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(branchesYAML, "any"))
		id, cs := anyRace(h, failOn("{}"))
		eq(t, "b dead", h.state(id).Steps["b"].State, "dead")
		for _, d := range cs {
			h.run(d, wrap)
		}
		h.drain(map[string]handlerFunc{"j": pass})
		st := h.state(id)
		eq(t, "join input", joinInput(t, h, id), `{"c":{"v":{}}}`)
		eq(t, "task error", st.Error, "")
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

// deadDetail returns the detail of the task's DEAD event, as
// "dead=<n> error=<error>".
func deadDetail(t *testing.T, h *harness, id string) string {
	t.Helper()
	for _, e := range h.events(id) {
		if e.Event == dsat.EventDead {
			var d struct {
				Dead  int    `json:"dead"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal(e.Detail, &d); err != nil {
				t.Fatal(err)
			}
			return fmt.Sprintf("dead=%d error=%s", d.Dead, d.Error)
		}
	}
	t.Fatalf("no DEAD event")
	return ""
}

// TestDeadCarriesTheError: a branch dies under join: all while another is
// still running; the task stays running until that one ends, then its
// DEAD event carries the dead branch's error.
func TestDeadCarriesTheError(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, fmt.Sprintf(branchesYAML, "all"))
		id, cs := anyRace(h, failOn("{}"))
		eq(t, "still running", h.state(id).Status, dsat.StatusRunning)
		for _, d := range cs {
			h.run(d, wrap)
		}
		eq(t, "status", h.state(id).Status, dsat.StatusFailed)
		eq(t, "DEAD detail", deadDetail(t, h, id), "dead=1 error=b: boom {}")
		h.checkInvariants(id)
		h.streamsEmpty()
	})
}

// TestMapItemDiesThenRetry: with join: all a dead item fails the task,
// its DEAD event carries the item's error; retry re-drives only that item,
// keeping its index, and the join fires once with every output in order.
// With max_parallel, once the item died no waiting item is released (the
// join cannot fire); after the retry they are released again.
func TestMapItemDiesThenRetry(t *testing.T) {
	for _, tc := range []struct{ name, mp, items, bad, want, after string }{
		{"all at once", "0", "1,2,3", "2", "dead:1 done:2", "done:3"},
		{"max_parallel", "2", "0,1,2,3,4", "0", "dead:1 done:1", "done:5"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
				y := strings.Replace(fmt.Sprintf(mapYAML, "all"), "retries: 0,", "retries: 0, max_parallel: "+tc.mp+",", 1)
				if tc.mp == "0" {
					y = fmt.Sprintf(mapYAML, "all")
				}
				h := newHarness(t, b, y)
				id := h.submit(`{"items":[` + tc.items + `]}`)
				h.drain(map[string]handlerFunc{"split": pass, "work": failOn(tc.bad), "collect": pass})
				st := h.state(id)
				eq(t, "status", st.Status, dsat.StatusFailed)
				eq(t, "work items", fmt.Sprint(st.Steps["work"].Items), "map["+tc.want+"]")
				eq(t, "collect not run", h.runs["collect"], 0)
				eq(t, "DEAD detail", deadDetail(t, h, id), "dead=1 error=work: boom "+tc.bad)
				if n, err := h.c.Retry(h.ctx, id); err != nil || n != 1 {
					t.Fatalf("retry: %d %v", n, err)
				}
				h.drain(map[string]handlerFunc{"work": wrap, "collect": pass})
				var outs []string
				for _, v := range strings.Split(tc.items, ",") {
					outs = append(outs, `{"v":`+v+`}`)
				}
				eq(t, "join input", joinInput(t, h, id), "["+strings.Join(outs, ",")+"]")
				eq(t, "collect ran once", h.runs["collect"], 1)
				eq(t, "work items after the retry", fmt.Sprint(h.state(id).Steps["work"].Items), "map["+tc.after+"]")
				h.checkInvariants(id)
				h.streamsEmpty()
			})
		})
	}
}

// TestMapStepErrorNotStale: a mapped step's state shows the step's last
// error only while one of its items has a failure that stands (retrying
// or dead): an item that failed and then succeeded leaves no error next
// to the items that are done (the error field is the step's, written by
// whichever item failed last).
func TestMapStepErrorNotStale(t *testing.T) {
	redistest.ForEachBackend(t, func(t *testing.T, b redistest.Backend) {
		h := newHarness(t, b, `
name: mapper
version: 1.0.0
steps:
  split: {handler: echo, map: items, next: [work]}
  work: {handler: echo, retries: 1, backoff: {initial: 1s, max: 1s}, next: [collect]}
  collect: {handler: echo, join: settled}
`)
		id := h.submit(`{"items":[0,1,2]}`)
		for _, d := range h.read("split") {
			h.run(d, pass)
		}
		firstFails := func(d dsat.Delivery) ([]byte, string, *dsat.Failure) {
			if string(d.Payload) == "0" && d.Attempt == 1 {
				return nil, "", &dsat.Failure{Message: "boom 0"}
			}
			return wrap(d)
		}
		for _, d := range h.read("work") {
			h.run(d, firstFails)
		}
		st := h.state(id).Steps["work"]
		eq(t, "items", fmt.Sprint(st.Items), "map[done:2 retrying:1]")
		eq(t, "error while item 0 waits for its retry", st.Error, "boom 0")
		h.drain(map[string]handlerFunc{"work": firstFails, "collect": pass})
		task := h.state(id)
		eq(t, "status", task.Status, dsat.StatusSucceeded)
		st = task.Steps["work"]
		eq(t, "items", fmt.Sprint(st.Items), "map[done:3]")
		eq(t, "state", st.State, "done")
		eq(t, "error once item 0 succeeded", st.Error, "")
		// An item that died under join: settled: its error stands.
		id2 := h.submit(`{"items":[0,1]}`)
		h.drain(map[string]handlerFunc{"split": pass, "work": failOn("1"), "collect": pass})
		st = h.state(id2).Steps["work"]
		eq(t, "items", fmt.Sprint(st.Items), "map[dead:1 done:1]")
		eq(t, "a dead item's error", st.Error, "boom 1")
	})
}
