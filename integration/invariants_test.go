//go:build integration

package integration

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/dsat-dev/dsat/dsat"
)

// report is what the invariant checker found.
type report struct {
	tasks, succeeded, failed int
	lost                     int // not final
	duplicates               int // extra state changes (END, join, final)
	problems                 []string
}

func (rep *report) add(format string, a ...any) {
	if len(rep.problems) < 20 {
		rep.problems = append(rep.problems, fmt.Sprintf(format, a...))
	}
}

// runsPerTask is the number of handler runs (tokens) of a task of the load
// pipeline: intake, work, route, pa or pb, merge.
const runsPerTask = 5

// check verifies I1-I4 for every task of the rig and fails the test on any
// violation. allowFailed lists tasks expected to fail (with a dead letter).
//
//	I1 every task reaches a final status: succeeded, or failed with a dead
//	   letter that has a reason;
//	I2 its events have seq 1..n without gap or repeat, one END per token,
//	   the join fires once, one final event;
//	I3 the state hash agrees with its events, and its event stream equals
//	   the partition firehose filtered to the task;
//	I4 step streams and their pending lists are empty.
func (r *rig) check(allowFailed map[string]bool) report {
	r.t.Helper()
	rep := report{tasks: len(r.ids)}
	firehose := map[string][]dsat.Event{}
	for n := 0; n < r.p.Partitions; n++ {
		msgs, err := r.rdb.XRange(r.ctx, r.c.Keys().Firehose(r.p.Partition(n)), "-", "+").Result()
		if err != nil {
			r.t.Fatal(err)
		}
		for _, m := range msgs {
			evs, err := dsat.ParseEntry(m)
			if err != nil {
				rep.add("I3: firehose entry %s: %v", m.ID, err)
				continue
			}
			for _, e := range evs {
				firehose[e.Task] = append(firehose[e.Task], e)
			}
		}
	}
	deadTasks := map[string]string{}
	for n := 0; n < r.p.Partitions; n++ {
		msgs, _ := r.rdb.XRange(r.ctx, r.c.Keys().Dead(r.p.Partition(n)), "-", "+").Result()
		for _, m := range msgs {
			task, _ := m.Values["task"].(string)
			reason, _ := m.Values["reason"].(string)
			deadTasks[task] = reason
		}
	}
	for _, id := range r.ids {
		r.checkTask(id, firehose[id], deadTasks, allowFailed, &rep)
	}
	for n := 0; n < r.p.Partitions; n++ {
		for _, s := range r.p.Order {
			key := r.c.Keys().Step(r.p.Partition(n), s)
			if l := r.rdb.XLen(r.ctx, key).Val(); l != 0 {
				rep.add("I4: stream %s holds %d entries", key, l)
			}
			if pi, err := r.rdb.XPending(r.ctx, key, s).Result(); err == nil && pi.Count != 0 {
				rep.add("I4: stream %s has %d pending entries", key, pi.Count)
			}
		}
	}
	if rep.lost > 0 || rep.duplicates > 0 || len(rep.problems) > 0 {
		r.t.Fatalf("invariants broken: %d tasks, %d lost, %d duplicate state changes:\n  %s%s",
			rep.tasks, rep.lost, rep.duplicates, strings.Join(rep.problems, "\n  "), r.logTails())
	}
	r.t.Logf("invariants hold: %d tasks (%d succeeded, %d failed), 0 lost, 0 duplicate state changes", rep.tasks, rep.succeeded, rep.failed)
	return rep
}

func (r *rig) checkTask(id string, fh []dsat.Event, dead map[string]string, allowFailed map[string]bool, rep *report) {
	st, err := r.c.Get(r.ctx, id)
	if err != nil {
		rep.lost++
		rep.add("I1: task %s: %v", id, err)
		return
	}
	switch {
	case st.Status == dsat.StatusSucceeded:
		rep.succeeded++
	case st.Status == dsat.StatusFailed && allowFailed[id] && dead[id] != "":
		rep.failed++
	case st.Status == dsat.StatusFailed:
		rep.lost++
		rep.add("I1: task %s failed (dead letter reason %q): %s", id, dead[id], st.Error)
		return
	default:
		rep.lost++
		rep.add("I1: task %s is %s", id, st.Status)
		return
	}
	evs, err := r.c.History(r.ctx, id, "", 0)
	if err != nil {
		rep.add("I3: task %s: %v", id, err)
		return
	}
	// The firehose (capped: its oldest events may be gone) holds the same
	// events as the task's log, in the same order.
	if len(fh) > len(evs) || fmt.Sprint(eventContent(fh)) != fmt.Sprint(eventContent(evs[len(evs)-len(fh):])) {
		rep.add("I3: task %s: event log (%d) differs from the firehose (%d kept)", id, len(evs), len(fh))
	}
	ends, joins, finals := 0, 0, 0
	for i, e := range evs {
		if e.Seq != int64(i+1) {
			rep.duplicates++
			rep.add("I2: task %s: event %d has seq %d", id, i, e.Seq)
			return
		}
		switch {
		case e.Event == dsat.EventEnd:
			ends++
		case e.Event == dsat.EventSend && strings.Contains(string(e.Detail), `"join"`):
			joins++
		case dsat.FinalEvent(e.Event):
			finals++
		}
	}
	if st.Seq != int64(len(evs)) {
		rep.add("I3: task %s: hash seq %d, %d events", id, st.Seq, len(evs))
	}
	if st.Status == dsat.StatusSucceeded {
		if ends != runsPerTask || joins != 1 || finals != 1 {
			rep.duplicates++
			rep.add("I2: task %s: %d END (want %d), join fired %d times, %d final events", id, ends, runsPerTask, joins, finals)
		}
		var res map[string]json.RawMessage
		if json.Unmarshal(st.Result, &res) != nil || len(res) != 2 {
			rep.add("I3: task %s: result %s", id, st.Result)
		}
		for name, s := range st.Steps {
			if s.State != "done" {
				rep.add("I3: task %s succeeded but step %s is %s", id, name, s.State)
			}
		}
	}
}

// eventContent is events without their feed positions (ID), which differ
// between a task's log and the firehose.
func eventContent(evs []dsat.Event) []dsat.Event {
	out := make([]dsat.Event, len(evs))
	for i, e := range evs {
		e.ID = ""
		out[i] = e
	}
	return out
}
