//go:build integration

package integration

import (
	"testing"
	"time"
)

// TestFaultFree: 2,000 tasks through the load pipeline with two workers,
// no fault: the baseline every fault test is compared with.
func TestFaultFree(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "", loadYAML(1))
	r.redis = "redis://" + rdb.Options().Addr
	r.worker("w1")
	r.worker("w2")
	r.submit(2000)
	r.waitFinal(60 * time.Second)
	r.check(nil)
}

// TestFaultSatelliteKilled (fault 1): SIGKILL a satellite several times
// while its handlers run; the others finish its tokens after the
// visibility timeout.
func TestFaultSatelliteKilled(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, loadYAML(1))
	r.worker("steady")
	victim := r.worker("victim-0")
	r.submit(2000)
	for i := 1; i <= 3; i++ {
		time.Sleep(400 * time.Millisecond)
		victim.kill()
		victim = r.worker("victim-" + string(rune('0'+i)))
	}
	r.waitFinal(90 * time.Second)
	r.check(nil)
}

// TestFaultCrashBeforeComplete (fault 2): workers kill themselves between
// a handler's return and its complete (the test-only hook); reruns
// complete each token once.
func TestFaultCrashBeforeComplete(t *testing.T) {
	fullSuite(t)
	_, rdb := standalone(t, "everysec")
	r := newRig(t, rdb, "redis://"+rdb.Options().Addr, loadYAML(1))
	r.worker("steady")
	crashes := 0
	r.submit(2000)
	deadline := time.Now().Add(5 * time.Second)
	var crashy *dsatProc
	for time.Now().Before(deadline) {
		if crashy == nil || !crashy.alive() {
			if crashy != nil {
				crashes++
			}
			crashy = r.worker("crashy-"+string(rune('a'+crashes)), "DSAT_TEST_CRASH_BEFORE_COMPLETE=0.02")
		}
		time.Sleep(50 * time.Millisecond)
	}
	crashy.stop(t)
	if crashes == 0 {
		t.Fatal("the crash hook never fired")
	}
	t.Logf("%d crashes between a handler's return and its complete", crashes)
	r.waitFinal(90 * time.Second)
	r.check(nil)
}
