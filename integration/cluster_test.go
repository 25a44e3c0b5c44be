//go:build integration

package integration

import (
	"context"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dsat-dev/dsat/internal/redistest"
)

// cluster is a Redis Cluster of 3 masters with 1 replica each, on
// loopback.
type cluster struct {
	nodes []*redistest.Server
}

func (c *cluster) addrs() []string {
	var out []string
	for _, n := range c.nodes {
		out = append(out, n.Addr)
	}
	return out
}

// url is the comma-separated address list dsat takes for a cluster.
func (c *cluster) url() string { return strings.Join(c.addrs(), ",") }

func startCluster(t *testing.T) *cluster {
	t.Helper()
	cli := redistest.RequireBinary(t, "redis-cli")
	c := &cluster{}
	for i := 0; i < 6; i++ {
		c.nodes = append(c.nodes, redistest.Start(t, "cluster-enabled yes", "cluster-node-timeout 2000",
			"cluster-config-file nodes.conf", "appendonly yes", "appendfsync everysec"))
	}
	args := append([]string{"--cluster", "create"}, c.addrs()...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(30 * time.Second)
	for _, n := range c.nodes {
		for {
			info, err := redis.NewClient(&redis.Options{Addr: n.Addr}).ClusterInfo(context.Background()).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("cluster not ok on %s: %v %s", n.Addr, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	return c
}

func (c *cluster) client(t *testing.T) *redis.ClusterClient {
	t.Helper()
	rc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.addrs()})
	t.Cleanup(func() { _ = rc.Close() })
	// Wait until the client sees every slot covered.
	deadline := time.Now().Add(20 * time.Second)
	for {
		shards, err := rc.ClusterShards(context.Background()).Result()
		covered := 0
		for _, s := range shards {
			for _, r := range s.Slots {
				covered += int(r.End - r.Start + 1)
			}
		}
		if err == nil && covered == 16384 {
			return rc
		}
		if time.Now().After(deadline) {
			t.Fatalf("cluster slots not covered: %d %v", covered, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// masterOf returns the address of the master serving key.
func masterOf(ctx context.Context, rc *redis.ClusterClient, key string) (string, error) {
	c, err := rc.MasterForKey(ctx, key)
	if err != nil {
		return "", err
	}
	return c.Options().Addr, nil
}
