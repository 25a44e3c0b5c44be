//go:build integration

package integration

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestCluster runs the load on a 3-master Redis Cluster (one replica each)
// with a 12-partition pipeline: partitions spread over every master, a
// satellite is SIGKILLed, and a replica takes over its master (CLUSTER
// FAILOVER) under load. No CROSSSLOT, scripts reload after NOSCRIPT on the
// promoted replica, nothing lost.
func TestCluster(t *testing.T) {
	fullSuite(t)
	cl := startCluster(t)
	rc := cl.client(t)
	r := newRig(t, rc, cl.url(), loadYAML(12))
	masters := map[string]bool{}
	for n := 0; n < 12; n++ {
		m, err := masterOf(r.ctx, rc, r.c.Keys().Firehose(r.p.Partition(n)))
		if err != nil {
			t.Fatal(err)
		}
		masters[m] = true
	}
	if len(masters) != 3 {
		t.Fatalf("12 partitions live on %d masters, want 3", len(masters))
	}
	r.worker("steady")
	victim := r.worker("victim")
	r.submit(2000)
	time.Sleep(500 * time.Millisecond)
	victim.kill() // fault 1 on the cluster
	r.worker("late")

	// Fail over one master to its replica while tasks run.
	// A manual failover needs the replica's link up and its offset caught
	// up; it is asked again if the first request times out.
	replica := findReplica(t, r.ctx, cl)
	rep := redis.NewClient(&redis.Options{Addr: replica})
	defer rep.Close()
	for i := 0; i < 100; i++ {
		info, _ := rep.Info(r.ctx, "replication").Result()
		if strings.Contains(info, "master_link_status:up") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	deadline := time.Now().Add(40 * time.Second)
	asked := time.Time{}
	var role []any
	for {
		if time.Since(asked) > 8*time.Second {
			if err := rep.Do(r.ctx, "CLUSTER", "FAILOVER").Err(); err != nil {
				t.Logf("CLUSTER FAILOVER on %s: %v", replica, err)
			}
			asked = time.Now()
		}
		role, _ = rep.Do(r.ctx, "ROLE").Slice()
		if len(role) > 0 && role[0] == "master" {
			break
		}
		if time.Now().After(deadline) {
			for _, n := range cl.nodes {
				if n.Addr == replica {
					t.Logf("replica log:\n%s", readFile(n.Dir+"/redis.log"))
				}
			}
			info, _ := redis.NewClient(&redis.Options{Addr: replica}).Info(r.ctx, "replication").Result()
			t.Fatalf("%s did not become master: %v\n%s", replica, role, info)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("replica %s took over under load", replica)
	r.waitFinal(180 * time.Second)
	r.check(nil)
	for _, w := range r.workers {
		if strings.Contains(readFile(w.log), "CROSSSLOT") {
			t.Fatalf("%s logged CROSSSLOT", w.name)
		}
	}
}

func findReplica(t *testing.T, ctx context.Context, cl *cluster) string {
	t.Helper()
	for _, n := range cl.nodes {
		role, err := redis.NewClient(&redis.Options{Addr: n.Addr}).Do(ctx, "ROLE").Slice()
		if err == nil && len(role) > 0 && role[0] == "slave" {
			return n.Addr
		}
	}
	t.Fatal("no replica found")
	return ""
}

// TestClusterMasterCrash (fault 4 on the cluster): SIGKILL the master that
// serves partition 0 under load and restart it on its AOF (appendfsync
// always) before its replica takes over: every accepted task completes.
func TestClusterMasterCrash(t *testing.T) {
	fullSuite(t)
	cl := startCluster(t)
	rc := cl.client(t)
	r := newRig(t, rc, cl.url(), loadYAML(12))
	r.worker("w1")
	r.worker("w2")
	r.submit(2000)
	addr, err := masterOf(r.ctx, rc, r.c.Keys().Firehose(r.p.Partition(0)))
	if err != nil {
		t.Fatal(err)
	}
	var victim *redistest.Server
	for _, n := range cl.nodes {
		if n.Addr == addr {
			victim = n
		}
	}
	if err := redis.NewClient(&redis.Options{Addr: addr}).ConfigSet(r.ctx, "appendfsync", "always").Err(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	victim.Stop() // SIGKILL
	time.Sleep(500 * time.Millisecond)
	victim.Restart(t)
	t.Logf("master %s killed and restarted on its AOF under load", addr)
	r.waitFinal(180 * time.Second)
	r.check(nil)
}
