//go:build integration

package integration

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dsat-dev/dsat/dsat"
)

// subParentYAML and subChildYAML: each parent task hands its payload to a
// child task (pipeline: kid), whose slow step is where the child's
// satellites die.
const (
	subParentYAML = `
name: load
version: 1.0.0
steps:
  intake: {handler: echo, next: [sub]}
  sub:    {pipeline: kid, retries: 0, next: [out]}
  out:    {handler: echo}
`
	subChildYAML = `
name: kid
version: 1.0.0
steps:
  x: {handler: sleep, with: {ms: 20}, timeout: 2s, next: [y], concurrency: {min: 4, max: 16}}
  y: {handler: echo}
`
)

// TestSubPipelineChildSatelliteKilled: 300 parents each run a child task;
// the satellite hosting the child pipeline is SIGKILLed 3 times mid-way.
// Every parent still succeeds with its child's result, each parent step
// submitted exactly one child (no child lost, none duplicated), and every
// child names its parent.
func TestSubPipelineChildSatelliteKilled(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, subParentYAML)
	if err := os.WriteFile(filepath.Join(r.dir, "kid.yaml"), []byte(subChildYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := dsat.LoadPipelines(os.DirFS(r.dir))
	if err != nil {
		t.Fatal(err)
	}
	if r.c, err = dsat.NewClient(rdb, dsat.Config{}, ps...); err != nil {
		t.Fatal(err)
	}
	r.worker("parents", "DSAT_STEPS=load")
	victim := r.worker("kids-0", "DSAT_STEPS=kid")
	r.submit(300)
	for i := 1; i <= 3; i++ {
		time.Sleep(700 * time.Millisecond)
		victim.kill()
		victim = r.worker("kids-"+string(rune('0'+i)), "DSAT_STEPS=kid")
	}
	r.waitFinal(120 * time.Second)
	children := map[string]bool{}
	for _, id := range r.ids {
		st, err := r.c.Get(r.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != dsat.StatusSucceeded {
			t.Fatalf("parent %s %s: %s", id, st.Status, st.Error)
		}
		// One END per step, seq without gap, one final event.
		evs, err := r.c.History(r.ctx, id, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		ends, finals := map[string]int{}, 0
		for i, e := range evs {
			if e.Seq != int64(i+1) {
				t.Fatalf("parent %s: event %d has seq %d", id, i, e.Seq)
			}
			if e.Event == dsat.EventEnd {
				ends[e.Step]++
			}
			if dsat.FinalEvent(e.Event) {
				finals++
			}
		}
		if ends["intake"] != 1 || ends["sub"] != 1 || ends["out"] != 1 || finals != 1 {
			t.Fatalf("parent %s: ENDs %v, %d final events", id, ends, finals)
		}
		kid := st.Steps["sub"].Child
		if kid == "" || children[kid] {
			t.Fatalf("parent %s: child %q (named twice or not at all)", id, kid)
		}
		children[kid] = true
		cst, err := r.c.Get(r.ctx, kid)
		if err != nil {
			t.Fatal(err)
		}
		if cst.Status != dsat.StatusSucceeded || cst.Parent == nil || cst.Parent.Task != id || cst.Parent.Step != "sub" {
			t.Fatalf("child %s of %s: %s parent %+v", kid, id, cst.Status, cst.Parent)
		}
		// The stock echo passes its input on: the parent's result is the
		// child's, which is the parent's payload.
		if string(st.Result) != string(cst.Result) || !strings.Contains(string(st.Result), `"i":`) {
			t.Fatalf("parent %s result %s, child's %s", id, st.Result, cst.Result)
		}
	}
	// No duplicate child: the child pipeline holds exactly 300 tasks.
	kid := ps[0]
	if kid.Name != "kid" {
		kid = ps[1]
	}
	keys, err := rdb.Keys(r.ctx, r.c.Keys().Task(kid.Partition(0), "*")).Result()
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, k := range keys {
		if !strings.Contains(k[strings.LastIndex(k, "}"):], ":t:") || strings.Count(k[strings.LastIndex(k, "}"):], ":") != 2 {
			continue
		}
		n++
	}
	if n != 300 {
		t.Fatalf("%d child tasks, want 300 (keys %d)", n, len(keys))
	}
	if z := rdb.ZCard(r.ctx, r.c.Keys().Children(r.p.Partition(0))).Val(); z != 0 {
		t.Fatalf("%d tokens still in the children set", z)
	}
}
