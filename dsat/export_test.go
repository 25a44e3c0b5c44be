package dsat

// CompleteCallForTest exposes the keys and arguments of a complete call so
// tests can run the script directly, twice, as a retried call would.
func CompleteCallForTest(c *Client, d Delivery, output []byte, label string) ([]string, []any) {
	errs := make([]error, 1)
	g := c.completeCalls([]Completion{{Delivery: d, Output: output, Label: label}}, errs)
	if errs[0] != nil {
		panic(errs[0])
	}
	return g[0].keys, g[0].args
}

func topoOrderForTest(p *Pipeline) []string { return topoOrder(p) }

// UndeliveredForTest marks a failure as the time keeper's: nothing is done
// unless the token's entry is still undelivered.
func UndeliveredForTest(f Failure) Failure {
	f.undelivered = true
	return f
}

// SetHistoryChunkForTest sets the bytes of a task's log that one read of
// HistoryPages takes.
func SetHistoryChunkForTest(c *Client, n int64) { c.historyChunk = n }

// BeforeBlockForTest makes f run when a reader by priority found nothing
// in any level and is about to block on all of them (EnablePriorities
// first).
func BeforeBlockForTest(r *StepReader, f func()) { r.prio.beforeBlock = f }
