//go:build integration

package dsat_test

import (
	"strconv"
	"strings"
	"testing"

	"github.com/dsat-dev/dsat/dsat"
	"github.com/dsat-dev/dsat/internal/redistest"
)

// TestSubPipelineCost measures, on redis-server, what a sub-pipeline step
// adds: the Redis commands (and script calls) from its token's read to its
// END, beside the same pipeline with a handler step in its place, and the
// memory a waiting token holds. It logs the figures (README, "Sub-pipelines")
// and fails only if the hand-off costs more than it should.
func TestSubPipelineCost(t *testing.T) {
	t.Parallel()
	var real redistest.Backend
	for _, b := range redistest.Backends() {
		if b.Real {
			real = b
		}
	}
	if real.New == nil {
		t.Skip("no redis-server")
	}
	const n = 100
	ph, ch := newSubHarness(t, real)
	calls := func() (total, scripts int) {
		info := ph.rdb.Info(ph.ctx, "commandstats").Val()
		for _, line := range strings.Split(info, "\n") {
			if !strings.HasPrefix(line, "cmdstat_") {
				continue
			}
			i := strings.Index(line, "calls=")
			v, _ := strconv.Atoi(strings.SplitN(line[i+6:], ",", 2)[0])
			if strings.HasPrefix(line, "cmdstat_info") || strings.HasPrefix(line, "cmdstat_memory") || strings.HasPrefix(line, "cmdstat_config") {
				continue
			}
			total += v
			if strings.HasPrefix(line, "cmdstat_evalsha") || strings.HasPrefix(line, "cmdstat_eval:") {
				scripts += v
			}
		}
		return total, scripts
	}
	var ids []string
	for i := 0; i < n; i++ {
		ids = append(ids, ph.submit(`{"i":1}`))
	}
	ph.drain(nil)
	ph.rdb.ConfigResetStat(ph.ctx)
	ph.startChildren("sub")
	hand, handScripts := calls()
	// A waiting token's memory: its children member and kept input.
	part := ph.p.Partition(0)
	set := ph.rdb.MemoryUsage(ph.ctx, ph.c.Keys().Children(part)).Val()
	input := ph.rdb.MemoryUsage(ph.ctx, ph.c.Keys().ChildInput(part, ids[0], ph.state(ids[0]).Steps["sub"].Token)).Val()
	ch.drain(nil)
	ph.rdb.ConfigResetStat(ph.ctx)
	if got := ph.settle(); got != n {
		t.Fatalf("settled %d", got)
	}
	sweep, sweepScripts := calls()
	ph.rdb.ConfigResetStat(ph.ctx)
	ph.settle()
	idle, _ := calls()
	ph.drain(nil)
	for _, id := range ids {
		if st := ph.state(id); st.Status != dsat.StatusSucceeded {
			t.Fatalf("%s %s", id, st.Status)
		}
	}
	// Commands count those the scripts run inside, as Redis's commandstats does.
	t.Logf("per sub-pipeline token: hand-off %.1f Redis commands (%.1f script calls: submit, link, park), settle %.2f commands (%.2f script calls), "+
		"an idle sweep of a partition %d commands; waiting: children set %d bytes for %d tokens (%.0f each), kept input %d bytes",
		float64(hand)/n, float64(handScripts)/n, float64(sweep)/n, float64(sweepScripts)/n, idle, set, n, float64(set)/n, input)
	// (+2: the first link and park calls load their scripts: EVALSHA, then EVAL.)
	if handScripts > 3*n+2 || sweepScripts != n || idle > 2 {
		t.Fatalf("hand-off %d scripts, settle %d scripts, idle sweep %d commands for %d tokens", handScripts, sweepScripts, idle, n)
	}
}
