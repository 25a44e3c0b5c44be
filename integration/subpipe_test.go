//go:build integration

package integration

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/dsat"
)

// subParentYAML and subChildYAML: each parent task hands its payload to a
// child task (pipeline: kid), whose slow step is where the child's
// satellites die.
const subParentYAML = `
name: load
version: 1.0.0
steps:
  intake: {handler: echo, next: [sub]}
  sub:    {pipeline: kid, retries: 0, next: [out]}
  out:    {handler: echo}
`

func subChildYAML(partitions int) string {
	return fmt.Sprintf(`
name: kid
version: 1.0.0
partitions: %d
steps:
  x: {handler: sleep, with: {ms: 50}, timeout: 2s, next: [y], concurrency: {min: 4, max: 4}}
  y: {handler: echo}
`, partitions)
}

// newSubRig is a rig whose folder holds the parent pipeline (r.p) and the
// child pipeline, which it returns.
func newSubRig(t *testing.T, rdb redis.UniversalClient, url string, childPartitions int) (*rig, *dsat.Pipeline) {
	t.Helper()
	r := newRig(t, rdb, url, subParentYAML)
	if err := os.WriteFile(filepath.Join(r.dir, "kid.yaml"), []byte(subChildYAML(childPartitions)), 0o644); err != nil {
		t.Fatal(err)
	}
	ps, err := dsat.LoadPipelines(os.DirFS(r.dir))
	if err != nil {
		t.Fatal(err)
	}
	if r.c, err = dsat.NewClient(rdb, dsat.Config{}, ps...); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if p.Name == "kid" {
			return r, p
		}
	}
	t.Fatal("no kid pipeline")
	return nil, nil
}

// checkSubParents checks every parent of r: succeeded with its child's
// result, one END per step, seq without gap, one final event, exactly one
// child, which succeeded and names it as its parent; and no child task
// more than the parents (none duplicated). It returns parent -> child.
func checkSubParents(t *testing.T, r *rig, kid *dsat.Pipeline) map[string]string {
	t.Helper()
	children := map[string]string{}
	named := map[string]bool{}
	for _, id := range r.ids {
		st, err := r.c.Get(r.ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if st.Status != dsat.StatusSucceeded {
			t.Fatalf("parent %s %s: %s", id, st.Status, st.Error)
		}
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
		child := st.Steps["sub"].Child
		if child == "" || named[child] {
			t.Fatalf("parent %s: child %q (named twice or not at all)", id, child)
		}
		named[child] = true
		children[id] = child
		cst, err := r.c.Get(r.ctx, child)
		if err != nil {
			t.Fatal(err)
		}
		if cst.Status != dsat.StatusSucceeded || cst.Parent == nil || cst.Parent.Task != id || cst.Parent.Step != "sub" {
			t.Fatalf("child %s of %s: %s parent %+v", child, id, cst.Status, cst.Parent)
		}
		// The stock echo passes its input on: the parent's result is the
		// child's, which is the parent's payload.
		if string(st.Result) != string(cst.Result) || !strings.Contains(string(st.Result), `"i":`) {
			t.Fatalf("parent %s result %s, child's %s", id, st.Result, cst.Result)
		}
	}
	// No duplicate child: the child pipeline holds as many tasks as there
	// are parents (a task's hash is the key ending in :t:<id>).
	n := 0
	for part := 0; part < kid.Partitions; part++ {
		keys, err := allKeys(r, r.c.Keys().Task(kid.Partition(part), "*"))
		if err != nil {
			t.Fatal(err)
		}
		for _, k := range keys {
			if strings.Count(k[strings.LastIndex(k, "}"):], ":") == 2 {
				n++
			}
		}
	}
	if n != len(r.ids) {
		t.Fatalf("%d child tasks, want %d", n, len(r.ids))
	}
	if z := r.rdb.ZCard(r.ctx, r.c.Keys().Children(r.p.Partition(0))).Val(); z != 0 {
		t.Fatalf("%d tokens still in the children set", z)
	}
	return children
}

// allKeys is KEYS pattern on one Redis, or on every master of a cluster.
func allKeys(r *rig, pattern string) ([]string, error) {
	rc, ok := r.rdb.(*redis.ClusterClient)
	if !ok {
		return r.rdb.Keys(r.ctx, pattern).Result()
	}
	var mu sync.Mutex
	var out []string
	err := rc.ForEachMaster(r.ctx, func(ctx context.Context, c *redis.Client) error {
		keys, err := c.Keys(ctx, pattern).Result()
		mu.Lock()
		out = append(out, keys...)
		mu.Unlock()
		return err
	})
	return out, err
}

// finalCount is how many of r's tasks are final.
func finalCount(r *rig) int {
	n := 0
	for _, id := range r.ids {
		if st, err := r.c.Get(r.ctx, id); err == nil && dsat.Final(st.Status) {
			n++
		}
	}
	return n
}

// TestSubPipelineChildSatelliteKilled: 300 parents each run a child task;
// the satellite hosting the child pipeline is SIGKILLed 3 times mid-way.
// Every parent still succeeds with its child's result, each parent step
// submitted exactly one child (no child lost, none duplicated), and every
// child names its parent.
func TestSubPipelineChildSatelliteKilled(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r, kid := newSubRig(t, rdb, "redis://"+rdb.Options().Addr, 1)
	r.worker("parents", "DSAT_STEPS=load")
	victim := r.worker("kids-0", "DSAT_STEPS=kid")
	r.submit(300)
	for i := 1; i <= 3; i++ {
		time.Sleep(700 * time.Millisecond)
		if i == 3 && finalCount(r) == len(r.ids) {
			t.Fatal("every parent ended before the last kill: the test proves nothing")
		}
		victim.kill()
		victim = r.worker("kids-"+string(rune('0'+i)), "DSAT_STEPS=kid")
	}
	r.waitFinal(120 * time.Second)
	checkSubParents(t, r, kid)
}

// TestSubPipelineCluster: on the 3-master cluster, a parent pipeline's
// children land on other masters (the child pipeline has 6 partitions):
// the cross-slot hand-off still ends every parent with its child.
func TestSubPipelineCluster(t *testing.T) {
	fullSuite(t)
	cl := startCluster(t)
	rc := cl.client(t)
	r, kid := newSubRig(t, rc, cl.url(), 6)
	r.worker("w1")
	r.worker("w2")
	r.submit(60)
	r.waitFinal(120 * time.Second)
	children := checkSubParents(t, r, kid)
	parentMaster, err := masterOf(r.ctx, rc, r.c.Keys().Firehose(r.p.Partition(0)))
	if err != nil {
		t.Fatal(err)
	}
	elsewhere := 0
	for _, child := range children {
		tid, _ := dsat.ParseTaskID(child)
		m, err := masterOf(r.ctx, rc, r.c.Keys().Firehose(tid.Partition))
		if err != nil {
			t.Fatal(err)
		}
		if m != parentMaster {
			elsewhere++
		}
	}
	if elsewhere == 0 {
		t.Fatal("no child on another master than its parent: the test proves nothing")
	}
	t.Logf("%d of %d children on another master than their parent", elsewhere, len(children))
}
