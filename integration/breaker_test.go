//go:build integration

package integration

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// breakerYAML: call fails every attempt after 600 ms while the file
// "healthy" is missing from the pipeline's folder, and echoes at once
// when it is there. Each worker runs 2 at once; no retries, so each
// failed attempt is a failed task.
const breakerYAML = `
name: load
version: 1.0.0
partitions: 1
steps:
  call:
    handler: exec
    with: {command: [sh, -c, "if [ -e healthy ]; then exec cat; fi; sleep 0.6; echo down >&2; exit 1"]}
    retries: 0
    concurrency: {min: 2, max: 2}
    breaker: {failures: 20, within: 1m, open_for: 2s}
`

// breakerFlowInterval is the satellites' default FlowInterval: how long
// a satellite may take to see a breaker another one opened.
const breakerFlowInterval = 500 * time.Millisecond

// TestBreakerAcrossSatelliteProcesses (issue 16): three dsat worker
// processes serve a step failing every attempt with breaker {failures:
// 20, within: 1m, open_for: 2s}, concurrency 2 each (W = 3 satellites, c
// = 2 runners).
//
// The bound on failed attempts before no new token begins: the 20 that
// open it; at most W·c running when it opened (they end failing, and
// count for nothing); and at most one more per runner begun after it
// opened, by a satellite that had not yet read the state (the opener
// holds its reader at once, the others within FlowInterval, 500 ms, and
// a failing attempt takes 600 ms, so a runner begins at most one in that
// time). So at most 20 + 2·W·c = 32 ACKs before the first probe, and
// none later than FlowInterval (+ 150 ms for the read) after the opening.
//
// Then: BREAKER events open, half_open, open (the probe failed), the
// handler is made healthy, half_open, closed; exactly one ACK (the probe)
// from each half_open to the next transition, none while open; after the
// closing every remaining task is done.
func TestBreakerAcrossSatelliteProcesses(t *testing.T) {
	fullSuite(t)
	const workers, runners = 3, 2
	s, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+s.Addr, breakerYAML)
	r.submit(100)
	for _, w := range []string{"w1", "w2", "w3"} {
		r.worker(w)
	}
	type move struct {
		state string
		at    time.Time
	}
	var moves []move
	readMoves := func() {
		t.Helper()
		entries, err := r.c.FirehoseRange(r.ctx, r.p.Partition(0), "0-0", 100000)
		if err != nil {
			t.Fatal(err)
		}
		moves = moves[:0]
		for _, m := range entries {
			for _, e := range m.Events {
				if e.Event != dsat.EventBreaker {
					continue
				}
				var d dsat.BreakerDetail
				if err := json.Unmarshal(e.Detail, &d); err != nil || e.Step != "call" || e.Task != "" {
					t.Fatalf("BREAKER event %+v: %v", e, err)
				}
				moves = append(moves, move{d.State, e.At.Time})
			}
		}
	}
	waitMoves := func(n int, limit time.Duration) {
		t.Helper()
		for deadline := time.Now().Add(limit); ; time.Sleep(50 * time.Millisecond) {
			if readMoves(); len(moves) >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d BREAKER events after %s, want %d: %+v%s", len(moves), limit, n, moves, r.logTails())
			}
		}
	}
	waitMoves(3, 30*time.Second) // open, half_open, open: the probe failed
	if err := os.WriteFile(filepath.Join(r.dir, "healthy"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	waitMoves(5, 10*time.Second) // half_open, closed
	r.waitFinal(60 * time.Second)
	readMoves()
	var states []string
	for _, m := range moves {
		states = append(states, m.state)
	}
	if got := strings.Join(states, ","); got != "open,half_open,open,half_open,closed" {
		t.Fatalf("BREAKER events %s, want open,half_open,open,half_open,closed", got)
	}

	var acks []time.Time
	failed, done := 0, 0
	for _, id := range r.ids {
		h, err := r.c.History(r.ctx, id, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range h {
			if e.Event == "ACK" && e.Step == "call" {
				acks = append(acks, e.At.Time)
			}
		}
		st, err := r.c.Get(r.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		switch st.Status {
		case dsat.StatusFailed:
			failed++
		case dsat.StatusSucceeded:
			done++
		}
	}
	slices.SortFunc(acks, time.Time.Compare)
	between := func(from, to time.Time) (n int) {
		for _, a := range acks {
			if !a.Before(from) && a.Before(to) {
				n++
			}
		}
		return n
	}
	opened, probe1, reopened, probe2, closed := moves[0].at, moves[1].at, moves[2].at, moves[3].at, moves[4].at
	before := between(time.Time{}, probe1)
	t.Logf("%d ACKs before the first probe (%d before the opening), the last %s after it opened; %d failed, %d done",
		before, between(time.Time{}, opened.Add(time.Millisecond)), lastBefore(acks, probe1).Sub(opened), failed, done)
	if bound := 20 + 2*workers*runners; before < 20 || before > bound {
		t.Errorf("%d attempts begun before the first probe, want 20..%d", before, bound)
	}
	if late := opened.Add(breakerFlowInterval + 150*time.Millisecond); between(late, probe1) != 0 {
		t.Errorf("%d ACKs later than %s after the opening, while open", between(late, probe1), late.Sub(opened))
	}
	if probe1.Sub(opened) < 2*time.Second || probe2.Sub(reopened) < 2*time.Second {
		t.Errorf("probes %s and %s after the openings, want open_for (2s)", probe1.Sub(opened), probe2.Sub(reopened))
	}
	if n := between(probe1, reopened.Add(time.Millisecond)); n != 1 {
		t.Errorf("%d ACKs from the first half_open to the reopening, want the one probe", n)
	}
	if n := between(reopened.Add(time.Millisecond), probe2); n != 0 {
		t.Errorf("%d ACKs while open again, want 0", n)
	}
	if n := between(probe2, closed.Add(time.Millisecond)); n != 1 {
		t.Errorf("%d ACKs from the second half_open to the closing, want the one probe", n)
	}
	// Every failed task is one failed attempt: the ones before the first
	// probe and the failed probe; the rest ran after the closing.
	if failed != before+1 || done != len(r.ids)-failed || len(acks) != len(r.ids) {
		t.Errorf("%d failed, %d done, %d ACKs of %d tasks; want %d failed (before the first probe, and the probe)",
			failed, done, len(acks), len(r.ids), before+1)
	}
}

// lastBefore is the latest of the sorted times ts before t.
func lastBefore(ts []time.Time, t time.Time) time.Time {
	var last time.Time
	for _, a := range ts {
		if a.Before(t) {
			last = a
		}
	}
	return last
}
